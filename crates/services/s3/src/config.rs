//! Bucket configurations kept in the bucket's `config` column: the bucket
//! policy (stored and returned, not enforced), bucket tags, CORS rules (served
//! on preflight `OPTIONS` and on responses to requests with an `Origin`), and the
//! lifecycle configuration with the sweep that applies it (expiration by prefix,
//! tags, age or date; aborting incomplete multipart uploads).

use crate::error::{internal, S3Error};
use crate::notify::{self, Change};
use crate::store::{self, Store};
use crate::wire::{self, S3Request};
use crate::State;
use axum::response::Response;
use http::StatusCode;
use nimbus_protocol::S3_NAMESPACE;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the `config` column holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BucketConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Vec<LifecycleRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Vec<CorsRule>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    pub prefix: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub expiration_days: Option<u32>,
    /// ISO 8601 date (midnight UTC).
    #[serde(default)]
    pub expiration_date: Option<String>,
    #[serde(default)]
    pub abort_days: Option<u32>,
    #[serde(default)]
    pub noncurrent_days: Option<u32>,
}

fn load(c: &Connection, bucket: &str) -> Result<BucketConfig, S3Error> {
    store::require_bucket(c, bucket)?;
    let text: String = c
        .query_row(
            "SELECT config FROM buckets WHERE name = ?1",
            [bucket],
            |r| r.get(0),
        )
        .map_err(internal)?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

fn save(c: &Connection, bucket: &str, cfg: &BucketConfig) -> Result<(), S3Error> {
    c.execute(
        "UPDATE buckets SET config = ?2 WHERE name = ?1",
        params![bucket, serde_json::to_string(cfg).map_err(internal)?],
    )
    .map_err(internal)?;
    Ok(())
}

async fn update(
    state: &Arc<State>,
    bucket: &str,
    f: impl FnOnce(&mut BucketConfig) + Send + 'static,
) -> Result<(), S3Error> {
    let bucket = bucket.to_string();
    state
        .store
        .tx(move |tx, _| {
            let mut cfg = load(tx, &bucket)?;
            f(&mut cfg);
            save(tx, &bucket, &cfg)
        })
        .await
}

async fn read(state: &Arc<State>, bucket: &str) -> Result<BucketConfig, S3Error> {
    let bucket = bucket.to_string();
    state.store.read(move |c| load(c, &bucket)).await
}

// ---- policy -----------------------------------------------------------------

pub async fn put_policy(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let malformed =
        |m: &str| S3Error::new(StatusCode::BAD_REQUEST, "MalformedPolicy", m.to_string());
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| malformed("Policies must be valid JSON"))?;
    let statements = doc
        .get("Statement")
        .ok_or_else(|| malformed("Missing required field Statement"))?;
    if !(statements.is_array() || statements.is_object()) {
        return Err(malformed("Statement must be an object or a list"));
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    update(state, &r.bucket, move |c| c.policy = Some(text)).await?;
    r.empty(StatusCode::NO_CONTENT)
}

pub async fn get_policy(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let cfg = read(state, &r.bucket).await?;
    let policy = cfg.policy.ok_or_else(|| {
        S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucketPolicy",
            "The bucket policy does not exist",
        )
        .field("BucketName", r.bucket.clone())
    })?;
    r.ok(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(policy))
        .map_err(internal)
}

pub async fn delete_policy(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    update(state, &r.bucket, |c| c.policy = None).await?;
    r.empty(StatusCode::NO_CONTENT)
}

// ---- bucket tagging -----------------------------------------------------------

#[derive(Deserialize)]
struct Tagging {
    #[serde(rename = "TagSet")]
    tag_set: TagSet,
}

#[derive(Deserialize, Default)]
struct TagSet {
    #[serde(rename = "Tag", default)]
    tags: Vec<TagXml>,
}

#[derive(Deserialize, Clone)]
struct TagXml {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

fn tag_map(tags: Vec<TagXml>, max: usize) -> Result<BTreeMap<String, String>, S3Error> {
    let invalid = |m: &str| S3Error::new(StatusCode::BAD_REQUEST, "InvalidTag", m.to_string());
    if tags.len() > max {
        return Err(invalid("Bucket tag count cannot be greater than 50"));
    }
    let mut out = BTreeMap::new();
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(invalid("The TagKey you have provided is invalid"));
        }
        if t.key.starts_with("aws:") {
            return Err(invalid("System tags cannot be added/updated by requester"));
        }
        if out.insert(t.key, t.value).is_some() {
            return Err(invalid("Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(out)
}

pub async fn put_tagging(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let t: Tagging = nimbus_protocol::decode_xml(&body).map_err(S3Error::from)?;
    let tags = tag_map(t.tag_set.tags, 50)?;
    update(state, &r.bucket, move |c| c.tags = Some(tags)).await?;
    r.empty(StatusCode::NO_CONTENT)
}

pub async fn get_tagging(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let cfg = read(state, &r.bucket).await?;
    let tags = cfg.tags.ok_or_else(|| {
        S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchTagSet",
            "The TagSet does not exist",
        )
        .field("BucketName", r.bucket.clone())
    })?;
    let doc = nimbus_protocol::xml_document("Tagging", Some(S3_NAMESPACE), |w| {
        w.nested("TagSet", |w| crate::objects::write_tags(w, &tags));
    });
    r.xml(doc)
}

pub async fn delete_tagging(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    update(state, &r.bucket, |c| c.tags = None).await?;
    r.empty(StatusCode::NO_CONTENT)
}

// ---- lifecycle -----------------------------------------------------------------

#[derive(Deserialize)]
struct LifecycleXml {
    #[serde(rename = "Rule", default)]
    rules: Vec<RuleXml>,
}

#[derive(Deserialize)]
struct RuleXml {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Prefix", default)]
    prefix: Option<String>,
    #[serde(rename = "Filter", default)]
    filter: Option<FilterXml>,
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Expiration", default)]
    expiration: Option<ExpirationXml>,
    #[serde(rename = "NoncurrentVersionExpiration", default)]
    noncurrent: Option<NoncurrentXml>,
    #[serde(rename = "AbortIncompleteMultipartUpload", default)]
    abort: Option<AbortXml>,
}

#[derive(Deserialize, Default)]
struct FilterXml {
    #[serde(rename = "Prefix", default)]
    prefix: Option<String>,
    #[serde(rename = "Tag", default)]
    tag: Option<TagXml>,
    #[serde(rename = "And", default)]
    and: Option<AndXml>,
}

#[derive(Deserialize, Default)]
struct AndXml {
    #[serde(rename = "Prefix", default)]
    prefix: Option<String>,
    #[serde(rename = "Tag", default)]
    tags: Vec<TagXml>,
}

#[derive(Deserialize)]
struct ExpirationXml {
    #[serde(rename = "Days", default)]
    days: Option<u32>,
    #[serde(rename = "Date", default)]
    date: Option<String>,
}

#[derive(Deserialize)]
struct NoncurrentXml {
    #[serde(rename = "NoncurrentDays", default)]
    days: Option<u32>,
}

#[derive(Deserialize)]
struct AbortXml {
    #[serde(rename = "DaysAfterInitiation")]
    days: u32,
}

fn parse_lifecycle(body: &[u8]) -> Result<Vec<LifecycleRule>, S3Error> {
    let x: LifecycleXml = nimbus_protocol::decode_xml(body).map_err(S3Error::from)?;
    if x.rules.is_empty() || x.rules.len() > 1000 {
        return Err(S3Error::from(nimbus_protocol::malformed_xml()));
    }
    let mut out = Vec::new();
    for r in x.rules {
        let enabled = match r.status.as_str() {
            "Enabled" => true,
            "Disabled" => false,
            _ => return Err(S3Error::from(nimbus_protocol::malformed_xml())),
        };
        let f = r.filter.unwrap_or_default();
        let (prefix, tags) = match (f.and, f.tag) {
            (Some(and), _) => (and.prefix.unwrap_or_default(), tag_map(and.tags, 50)?),
            (None, Some(t)) => (String::new(), tag_map(vec![t], 1)?),
            (None, None) => (f.prefix.or(r.prefix).unwrap_or_default(), BTreeMap::new()),
        };
        let (expiration_days, expiration_date) = match r.expiration {
            Some(e) => {
                if let Some(d) = &e.date {
                    if wire::parse_http_date(d).is_none()
                        && nimbus_protocol::timestamp::parse_iso8601(d).is_none()
                    {
                        return Err(S3Error::invalid_argument("'Date' must be at midnight GMT"));
                    }
                }
                if e.days == Some(0) {
                    return Err(S3Error::invalid_argument(
                        "'Days' for Expiration action must be a positive integer",
                    ));
                }
                (e.days, e.date)
            }
            None => (None, None),
        };
        let rule = LifecycleRule {
            id: r
                .id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            enabled,
            prefix,
            tags,
            expiration_days,
            expiration_date,
            abort_days: r.abort.map(|a| a.days),
            noncurrent_days: r.noncurrent.and_then(|n| n.days),
        };
        if rule.expiration_days.is_none()
            && rule.expiration_date.is_none()
            && rule.abort_days.is_none()
            && rule.noncurrent_days.is_none()
        {
            return Err(S3Error::invalid_request(
                "At least one action needs to be specified in a rule",
            ));
        }
        if out.iter().any(|o: &LifecycleRule| o.id == rule.id) {
            return Err(S3Error::invalid_argument(
                "Rule ID must be unique. Found same ID for more than one rule",
            ));
        }
        out.push(rule);
    }
    Ok(out)
}

pub async fn put_lifecycle(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let rules = parse_lifecycle(&body)?;
    update(state, &r.bucket, move |c| c.lifecycle = Some(rules)).await?;
    r.empty(StatusCode::OK)
}

pub async fn get_lifecycle(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let cfg = read(state, &r.bucket).await?;
    let rules = cfg.lifecycle.ok_or_else(|| {
        S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchLifecycleConfiguration",
            "The lifecycle configuration does not exist",
        )
        .field("BucketName", r.bucket.clone())
    })?;
    let doc = nimbus_protocol::xml_document("LifecycleConfiguration", Some(S3_NAMESPACE), |w| {
        for rule in &rules {
            w.nested("Rule", |w| {
                w.element("ID", &rule.id);
                w.nested("Filter", |w| {
                    if rule.tags.is_empty() {
                        w.element("Prefix", &rule.prefix);
                    } else {
                        w.nested("And", |w| {
                            w.element("Prefix", &rule.prefix);
                            crate::objects::write_tags(w, &rule.tags);
                        });
                    }
                });
                w.element("Status", if rule.enabled { "Enabled" } else { "Disabled" });
                if rule.expiration_days.is_some() || rule.expiration_date.is_some() {
                    w.nested("Expiration", |w| {
                        if let Some(d) = rule.expiration_days {
                            w.element("Days", &d.to_string());
                        }
                        w.element_opt("Date", rule.expiration_date.as_deref());
                    });
                }
                if let Some(d) = rule.noncurrent_days {
                    w.nested("NoncurrentVersionExpiration", |w| {
                        w.element("NoncurrentDays", &d.to_string());
                    });
                }
                if let Some(d) = rule.abort_days {
                    w.nested("AbortIncompleteMultipartUpload", |w| {
                        w.element("DaysAfterInitiation", &d.to_string());
                    });
                }
            });
        }
    });
    r.xml(doc)
}

pub async fn delete_lifecycle(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    update(state, &r.bucket, |c| c.lifecycle = None).await?;
    r.empty(StatusCode::NO_CONTENT)
}

/// What one sweep did.
#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub expired: u64,
    pub aborted: u64,
}

const DAY_MS: i64 = 86_400_000;

/// Apply every bucket's enabled lifecycle rules as of `now_ms`: expire
/// matching objects (with `LifecycleExpiration:Delete` notifications) and abort
/// stale multipart uploads. Noncurrent-version rules have nothing to act on
/// (no versioning).
pub fn sweep(store: &Store, now_ms: i64) -> Result<(SweepReport, bool), S3Error> {
    store.with(|c| {
        let tx = c.transaction().map_err(internal)?;
        let mut report = SweepReport::default();
        let mut queued = false;
        let buckets: Vec<(String, String)> = {
            let mut s = tx
                .prepare("SELECT name, config FROM buckets WHERE config LIKE '%lifecycle%'")
                .map_err(internal)?;
            let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)?
        };
        for (name, text) in buckets {
            let cfg: BucketConfig = serde_json::from_str(&text).unwrap_or_default();
            let Some(rules) = cfg.lifecycle else { continue };
            let bucket = store::require_bucket(&tx, &name)?;
            for rule in rules.iter().filter(|r| r.enabled) {
                let cutoff = match (rule.expiration_days, &rule.expiration_date) {
                    (Some(d), _) => Some(now_ms - d as i64 * DAY_MS),
                    (None, Some(date)) => {
                        let at = nimbus_protocol::timestamp::parse_iso8601(date)
                            .or_else(|| wire::parse_http_date(date));
                        at.filter(|t| (t.unix_timestamp() * 1000) <= now_ms).map(|_| i64::MAX)
                    }
                    _ => None,
                };
                if let Some(cutoff) = cutoff {
                    let victims: Vec<store::Object> = {
                        let mut s = tx
                            .prepare(
                                "SELECT key, blob, size, etag, modified_ms, meta, version_id FROM objects
                                 WHERE bucket = ?1 AND substr(key, 1, length(?2)) = ?2 AND modified_ms <= ?3",
                            )
                            .map_err(internal)?;
                        let rows = s
                            .query_map(params![name, rule.prefix, cutoff], store::object_row)
                            .map_err(internal)?;
                        rows.collect::<Result<_, _>>().map_err(internal)?
                    };
                    for obj in victims {
                        if !rule.tags.iter().all(|(k, v)| obj.meta.tags.get(k) == Some(v)) {
                            continue;
                        }
                        let d = store::delete_current(&tx, &name, &obj.key)?;
                        let mut change = Change {
                            category: "LifecycleExpiration",
                            name: "Delete",
                            key: obj.key.clone(),
                            size: None,
                            etag: None,
                            request_id: uuid::Uuid::new_v4().to_string(),
                            principal: "s3.amazonaws.com".into(),
                            time_ms: now_ms,
                            version_id: None,
                        };
                        if d.delete_marker {
                            change.name = "DeleteMarkerCreated";
                            change.version_id = d.version_id.clone();
                        }
                        queued |= notify::enqueue(&tx, &bucket, change)?;
                        for blob in &d.release {
                            store.release(&tx, blob)?;
                        }
                        report.expired += 1;
                    }
                }
                if let Some(days) = rule.noncurrent_days {
                    let gone: Vec<(String, String, Option<String>)> = {
                        let mut s = tx
                            .prepare(
                                "SELECT key, version_id, blob FROM versions WHERE bucket = ?1
                                 AND substr(key, 1, length(?2)) = ?2 AND delete_marker = 0
                                 AND archived_ms <= ?3",
                            )
                            .map_err(internal)?;
                        let rows = s
                            .query_map(params![name, rule.prefix, now_ms - days as i64 * DAY_MS], |r| {
                                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                            })
                            .map_err(internal)?;
                        rows.collect::<Result<_, _>>().map_err(internal)?
                    };
                    for (key, vid, blob) in gone {
                        tx.execute(
                            "DELETE FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3",
                            params![name, key, vid],
                        )
                        .map_err(internal)?;
                        if let Some(b) = blob {
                            store.release(&tx, &b)?;
                        }
                        report.expired += 1;
                    }
                }
                if let Some(days) = rule.abort_days {
                    let ids: Vec<String> = {
                        let mut s = tx
                            .prepare(
                                "SELECT id FROM uploads WHERE bucket = ?1
                                 AND substr(key, 1, length(?2)) = ?2 AND initiated_ms <= ?3",
                            )
                            .map_err(internal)?;
                        let rows = s
                            .query_map(params![name, rule.prefix, now_ms - days as i64 * DAY_MS], |r| r.get(0))
                            .map_err(internal)?;
                        rows.collect::<Result<_, _>>().map_err(internal)?
                    };
                    for id in ids {
                        for blob in crate::multipart::drop_upload(&tx, &id)? {
                            store.release(&tx, &blob)?;
                        }
                        report.aborted += 1;
                    }
                }
            }
        }
        let committed = tx.commit().map_err(internal);
        store.settle(c, committed.is_ok());
        committed?;
        Ok((report, queued))
    })
}

/// Sweep now and then (hourly), for as long as the server runs.
pub fn start_sweeper(state: Arc<State>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let st = state.clone();
            let res = tokio::task::spawn_blocking(move || sweep(&st.store, store::now_ms())).await;
            match res {
                Ok(Ok((report, queued))) => {
                    if queued {
                        state.notify.wake();
                    }
                    if report.expired + report.aborted > 0 {
                        tracing::info!(
                            expired = report.expired,
                            aborted = report.aborted,
                            "s3 lifecycle sweep"
                        );
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "s3 lifecycle sweep failed"),
                Err(e) => tracing::warn!(error = %e, "s3 lifecycle sweep panicked"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_rules_parse() {
        let xml = br#"<LifecycleConfiguration>
            <Rule><ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>
              <Expiration><Days>30</Days></Expiration>
              <AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>
            <Rule><ID>tmp</ID><Filter><And><Prefix>tmp/</Prefix><Tag><Key>t</Key><Value>1</Value></Tag></And></Filter>
              <Status>Disabled</Status><Expiration><Days>1</Days></Expiration></Rule>
            </LifecycleConfiguration>"#;
        let rules = parse_lifecycle(xml).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].prefix, "logs/");
        assert_eq!(rules[0].expiration_days, Some(30));
        assert_eq!(rules[0].abort_days, Some(7));
        assert!(!rules[1].enabled);
        assert_eq!(rules[1].tags.get("t").map(String::as_str), Some("1"));
        let none = br#"<LifecycleConfiguration><Rule><ID>x</ID><Filter/><Status>Enabled</Status></Rule></LifecycleConfiguration>"#;
        assert_eq!(parse_lifecycle(none).unwrap_err().0.code, "InvalidRequest");
    }
}

// ---- CORS ------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CorsRule {
    #[serde(default)]
    pub id: Option<String>,
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub max_age: Option<u32>,
}

#[derive(Deserialize)]
struct CorsXml {
    #[serde(rename = "CORSRule", default)]
    rules: Vec<CorsRuleXml>,
}

#[derive(Deserialize)]
struct CorsRuleXml {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "AllowedOrigin", default)]
    origins: Vec<String>,
    #[serde(rename = "AllowedMethod", default)]
    methods: Vec<String>,
    #[serde(rename = "AllowedHeader", default)]
    headers: Vec<String>,
    #[serde(rename = "ExposeHeader", default)]
    expose: Vec<String>,
    #[serde(rename = "MaxAgeSeconds", default)]
    max_age: Option<u32>,
}

fn parse_cors(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    let x: CorsXml = nimbus_protocol::decode_xml(body).map_err(S3Error::from)?;
    if x.rules.is_empty() || x.rules.len() > 100 {
        return Err(S3Error::from(nimbus_protocol::malformed_xml()));
    }
    let mut out = Vec::new();
    for r in x.rules {
        if r.origins.is_empty() || r.methods.is_empty() {
            return Err(S3Error::from(nimbus_protocol::malformed_xml()));
        }
        for m in &r.methods {
            if !matches!(m.as_str(), "GET" | "PUT" | "HEAD" | "POST" | "DELETE") {
                return Err(S3Error::invalid_request(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                )));
            }
        }
        for o in &r.origins {
            if o.matches('*').count() > 1 {
                return Err(S3Error::invalid_request(format!(
                    "AllowedOrigin \"{o}\" can not have more than one wildcard."
                )));
            }
        }
        out.push(CorsRule {
            id: r.id,
            origins: r.origins,
            methods: r.methods,
            headers: r.headers,
            expose: r.expose,
            max_age: r.max_age,
        });
    }
    Ok(out)
}

pub async fn put_cors(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let rules = parse_cors(&body)?;
    update(state, &r.bucket, move |c| c.cors = Some(rules)).await?;
    r.empty(StatusCode::OK)
}

pub async fn get_cors(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let cfg = read(state, &r.bucket).await?;
    let rules = cfg.cors.ok_or_else(|| {
        S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchCORSConfiguration",
            "The CORS configuration does not exist",
        )
        .field("BucketName", r.bucket.clone())
    })?;
    let doc = nimbus_protocol::xml_document("CORSConfiguration", Some(S3_NAMESPACE), |w| {
        for rule in &rules {
            w.nested("CORSRule", |w| {
                w.element_opt("ID", rule.id.as_deref());
                for h in &rule.headers {
                    w.element("AllowedHeader", h);
                }
                for m in &rule.methods {
                    w.element("AllowedMethod", m);
                }
                for o in &rule.origins {
                    w.element("AllowedOrigin", o);
                }
                for e in &rule.expose {
                    w.element("ExposeHeader", e);
                }
                if let Some(a) = rule.max_age {
                    w.element("MaxAgeSeconds", &a.to_string());
                }
            });
        }
    });
    r.xml(doc)
}

pub async fn delete_cors(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    update(state, &r.bucket, |c| c.cors = None).await?;
    r.empty(StatusCode::NO_CONTENT)
}

/// `*` matches any run of characters (at most one in an S3 pattern).
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((a, b)) => {
            value.len() >= a.len() + b.len() && value.starts_with(a) && value.ends_with(b)
        }
    }
}

/// The first rule allowing `origin` to use `method` with `headers`.
pub fn cors_match<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.origins.iter().any(|o| wildcard(o, origin))
            && r.methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                r.headers
                    .iter()
                    .any(|a| wildcard(&a.to_ascii_lowercase(), &h.to_ascii_lowercase()))
            })
    })
}

/// The bucket's CORS rules, if any (for the front-end, on requests with an
/// `Origin`).
pub fn cors_rules(store: &Store, bucket: &str) -> Option<Vec<CorsRule>> {
    store
        .with(|c| load(c, bucket))
        .ok()
        .and_then(|cfg| cfg.cors)
}

/// The `Access-Control-*` headers a matching rule grants.
pub fn cors_headers(
    rule: &CorsRule,
    origin: &str,
    preflight: Option<(&str, &[String])>,
) -> Vec<(&'static str, String)> {
    let any_origin = rule.origins.iter().any(|o| o == "*");
    let mut h = vec![(
        "access-control-allow-origin",
        if any_origin {
            "*".to_string()
        } else {
            origin.to_string()
        },
    )];
    if !any_origin {
        h.push((
            "vary",
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
        ));
        h.push(("access-control-allow-credentials", "true".into()));
    }
    match preflight {
        Some((method, headers)) => {
            h.push(("access-control-allow-methods", method.to_string()));
            if !headers.is_empty() {
                h.push(("access-control-allow-headers", headers.join(", ")));
            }
            if let Some(a) = rule.max_age {
                h.push(("access-control-max-age", a.to_string()));
            }
        }
        None => {
            h.push(("access-control-allow-methods", rule.methods.join(", ")));
        }
    }
    if !rule.expose.is_empty() {
        h.push(("access-control-expose-headers", rule.expose.join(", ")));
    }
    h
}
