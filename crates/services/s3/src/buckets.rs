//! Buckets: create (with a location constraint), head, list, delete, location.

use crate::error::{internal, S3Error};
use crate::store::{self, Bucket};
use crate::wire::{self, S3Request};
use crate::State;
use axum::response::Response;
use http::StatusCode;
use nimbus_protocol::S3_NAMESPACE;
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use std::sync::Arc;

/// S3's bucket naming rules (general purpose buckets).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return false;
    }
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-';
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.iter().all(|&c| ok_char(c)) || !edge(b[0]) || !edge(b[b.len() - 1]) {
        return false;
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return false;
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return false;
    }
    for bad_prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(bad_prefix) {
            return false;
        }
    }
    for bad_suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3"] {
        if name.ends_with(bad_suffix) {
            return false;
        }
    }
    true
}

#[derive(Deserialize, Default)]
struct CreateBucketConfiguration {
    #[serde(rename = "LocationConstraint", default)]
    location_constraint: Option<String>,
}

pub async fn create_bucket(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let name = r.bucket.clone();
    if !valid_bucket_name(&name) {
        return Err(S3Error::invalid_bucket_name(&name));
    }
    let body = r.read_xml_body().await?;
    let config: CreateBucketConfiguration = if body.iter().all(|b| b.is_ascii_whitespace()) {
        CreateBucketConfiguration::default()
    } else {
        nimbus_protocol::decode_xml(&body).map_err(S3Error::from)?
    };
    let region = match config.location_constraint.filter(|c| !c.is_empty()) {
        Some(c) if c == "us-east-1" => {
            return Err(S3Error::invalid_argument(
                "The specified location-constraint is not valid",
            )
            .field("LocationConstraint", c));
        }
        Some(c) if c == "EU" => "eu-west-1".to_string(),
        Some(c) => {
            let valid = c.len() <= 32
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && c.contains('-');
            if !valid {
                return Err(S3Error::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidLocationConstraint",
                    "The specified location-constraint is not valid",
                )
                .field("LocationConstraint", c));
            }
            c
        }
        None => "us-east-1".to_string(),
    };
    let now = store::now_ms();
    let n = name.clone();
    state
        .store
        .tx(move |tx, _| {
            if store::get_bucket(tx, &n)?.is_some() {
                return Err(S3Error::new(
                    StatusCode::CONFLICT,
                    "BucketAlreadyOwnedByYou",
                    "Your previous request to create the named bucket succeeded and you already own it.",
                )
                .field("BucketName", n.clone()));
            }
            tx.execute(
                "INSERT INTO buckets(name, region, created_ms) VALUES (?1, ?2, ?3)",
                params![n, region, now],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await?;
    tracing::info!(bucket = %name, "s3: bucket created");
    r.ok(StatusCode::OK)
        .header("location", format!("/{name}"))
        .body(axum::body::Body::empty())
        .map_err(internal)
}

pub async fn head_bucket(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let name = r.bucket.clone();
    let b = state
        .store
        .read(move |c| store::require_bucket(c, &name))
        .await?;
    r.ok(StatusCode::OK)
        .header("x-amz-bucket-region", b.region)
        .body(axum::body::Body::empty())
        .map_err(internal)
}

pub async fn get_bucket_location(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let name = r.bucket.clone();
    let b = state
        .store
        .read(move |c| store::require_bucket(c, &name))
        .await?;
    let mut w = nimbus_protocol::XmlWriter::new();
    w.start_ns("LocationConstraint", S3_NAMESPACE);
    if b.region != "us-east-1" {
        w.text(&b.region);
    }
    w.end("LocationConstraint");
    r.xml(w.finish())
}

pub async fn delete_bucket(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let name = r.bucket.clone();
    state
        .store
        .tx(move |tx, st| {
            store::require_bucket(tx, &name)?;
            let any: Option<i64> = tx
                .query_row("SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1", [&name], |r| r.get(0))
                .optional()
                .map_err(internal)?;
            let versions: Option<i64> = tx
                .query_row("SELECT 1 FROM versions WHERE bucket = ?1 LIMIT 1", [&name], |r| r.get(0))
                .optional()
                .map_err(internal)?;
            if any.is_some() || versions.is_some() {
                return Err(S3Error::new(
                    StatusCode::CONFLICT,
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty",
                )
                .field("BucketName", name.clone()));
            }
            // Incomplete multipart uploads go with the bucket.
            let blobs: Vec<String> = {
                let mut s = tx
                    .prepare("SELECT p.blob FROM parts p JOIN uploads u ON u.id = p.upload_id WHERE u.bucket = ?1")
                    .map_err(internal)?;
                let rows = s.query_map([&name], |r| r.get(0)).map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)?
            };
            tx.execute(
                "DELETE FROM parts WHERE upload_id IN (SELECT id FROM uploads WHERE bucket = ?1)",
                [&name],
            )
            .map_err(internal)?;
            tx.execute("DELETE FROM uploads WHERE bucket = ?1", [&name]).map_err(internal)?;
            tx.execute("DELETE FROM buckets WHERE name = ?1", [&name]).map_err(internal)?;
            for b in blobs {
                st.release(tx, &b)?;
            }
            Ok(())
        })
        .await?;
    r.empty(StatusCode::NO_CONTENT)
}

pub async fn list_buckets(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let prefix = r.q("prefix").unwrap_or("").to_string();
    let after = match r.q("continuation-token") {
        Some(t) => crate::list::decode_token(t)?,
        None => String::new(),
    };
    let max: usize = match r.q("max-buckets") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| {
                S3Error::invalid_argument(
                    "Argument max-buckets must be an integer between 1 and 10000",
                )
            })?,
        None => 10000,
    };
    let region_filter = r.q("bucket-region").map(str::to_string);
    let buckets: Vec<Bucket> = state
        .store
        .read(move |c| {
            let mut s = c
                .prepare(
                    "SELECT name, region, created_ms FROM buckets WHERE name > ?1 ORDER BY name",
                )
                .map_err(internal)?;
            let rows = s
                .query_map([&after], |r| {
                    Ok(Bucket {
                        name: r.get(0)?,
                        region: r.get(1)?,
                        created_ms: r.get(2)?,
                        notification: None,
                    })
                })
                .map_err(internal)?;
            let mut out = Vec::new();
            for b in rows {
                let b = b.map_err(internal)?;
                if b.name.starts_with(&prefix)
                    && region_filter.as_deref().is_none_or(|rf| rf == b.region)
                {
                    out.push(b);
                    if out.len() > max {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await?;
    let truncated = buckets.len() > max;
    let shown = &buckets[..buckets.len().min(max)];
    let paged = r.q("max-buckets").is_some() || r.q("continuation-token").is_some();
    let doc = nimbus_protocol::xml_document("ListAllMyBucketsResult", Some(S3_NAMESPACE), |w| {
        w.nested("Owner", |w| {
            w.element("ID", &state.account_id);
            w.element("DisplayName", "nimbus");
        });
        w.nested("Buckets", |w| {
            for b in shown {
                w.nested("Bucket", |w| {
                    w.element("Name", &b.name);
                    w.element("CreationDate", &wire::iso8601_ms(b.created_ms));
                    w.element("BucketRegion", &b.region);
                });
            }
        });
        if truncated && paged {
            if let Some(last) = shown.last() {
                w.element("ContinuationToken", &crate::list::encode_token(&last.name));
            }
        }
        if let Some(p) = r.q("prefix") {
            w.element("Prefix", p);
        }
    });
    r.xml(doc)
}

#[derive(Deserialize)]
struct VersioningConfiguration {
    #[serde(rename = "Status", default)]
    status: Option<String>,
}

pub async fn put_versioning(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let v: VersioningConfiguration = nimbus_protocol::decode_xml(&body).map_err(S3Error::from)?;
    let status = match v.status.as_deref() {
        Some(s @ ("Enabled" | "Suspended")) => s.to_string(),
        _ => return Err(S3Error::from(nimbus_protocol::malformed_xml())),
    };
    let name = r.bucket.clone();
    state
        .store
        .tx(move |tx, _| {
            store::require_bucket(tx, &name)?;
            tx.execute(
                "UPDATE buckets SET versioning = ?2 WHERE name = ?1",
                params![name, status],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await?;
    r.empty(StatusCode::OK)
}

pub async fn get_versioning(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let name = r.bucket.clone();
    let status = state
        .store
        .read(move |c| {
            store::require_bucket(c, &name)?;
            store::versioning(c, &name)
        })
        .await?;
    let doc = nimbus_protocol::xml_document("VersioningConfiguration", Some(S3_NAMESPACE), |w| {
        w.element_opt("Status", status.as_deref());
    });
    r.xml(doc)
}

#[cfg(test)]
mod tests {
    use super::valid_bucket_name;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket", "my.bucket.1", "a1b", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "My-Bucket",
            "-abc",
            "abc-",
            "a..b",
            "192.168.0.1",
            "xn--abc",
            "a_b",
            "abc-s3alias",
            "a.-b",
            &"a".repeat(64),
            "../x",
            "a/b",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
