//! `ListObjectsV2` and `ListObjects` (V1): prefix, delimiter and common
//! prefixes, start-after / marker, continuation tokens, max-keys and
//! `encoding-type=url`. Keys are listed in UTF-8 binary order (SQLite's BINARY
//! collation), as S3 lists them.

use crate::error::{internal, S3Error};
use crate::store::{self, Object};
use crate::wire::{self, quoted, S3Request};
use crate::State;
use axum::response::Response;
use base64::Engine;
use nimbus_protocol::{XmlWriter, S3_NAMESPACE};
use rusqlite::params;
use std::sync::Arc;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode_token(key: &str) -> String {
    B64.encode(key.as_bytes())
}

pub fn decode_token(t: &str) -> Result<String, S3Error> {
    B64.decode(t.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::invalid_argument("The continuation token provided is incorrect")
                .field("ArgumentName", "continuation-token")
        })
}

/// One page of a listing.
pub struct Page {
    pub contents: Vec<Object>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned (the next page starts after it).
    pub last: Option<String>,
}

/// List keys of `bucket` after `after` under `prefix`, rolling keys up to the
/// `delimiter` into common prefixes, at most `max` entries.
pub fn page(
    c: &rusqlite::Connection,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max: usize,
) -> Result<Page, S3Error> {
    let mut out = Page {
        contents: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    let mut cursor = after.to_string();
    let mut inclusive = false;
    if cursor.as_str() < prefix {
        cursor = prefix.to_string();
        inclusive = true;
    }
    let mut s = c
        .prepare(
            "SELECT key, blob, size, etag, modified_ms, meta, version_id FROM objects
             WHERE bucket = ?1 AND (key > ?2 OR (?3 AND key = ?2)) ORDER BY key LIMIT ?4",
        )
        .map_err(internal)?;
    'outer: loop {
        let batch: Vec<Object> = s
            .query_map(
                rusqlite::params![bucket, cursor, inclusive, (max + 1).max(64) as i64],
                store::object_row,
            )
            .map_err(internal)?
            .collect::<Result<_, _>>()
            .map_err(internal)?;
        if batch.is_empty() {
            break;
        }
        let n = batch.len();
        inclusive = false;
        for obj in batch {
            cursor = obj.key.clone();
            if !obj.key.starts_with(prefix) {
                break 'outer;
            }
            let rest = &obj.key[prefix.len()..];
            let entry_prefix = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                rest.find(d)
                    .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
            });
            if out.contents.len() + out.prefixes.len() >= max {
                out.truncated = true;
                break 'outer;
            }
            match entry_prefix {
                Some(cp) => {
                    out.last = Some(cp.clone());
                    // Skip the rest of this common prefix: continue after every key
                    // that starts with it.
                    cursor = format!("{cp}\u{10FFFF}");
                    out.prefixes.push(cp);
                    continue 'outer;
                }
                None => {
                    out.last = Some(obj.key.clone());
                    out.contents.push(obj);
                }
            }
        }
        if n < (max + 1).max(64) {
            break;
        }
    }
    Ok(out)
}

pub async fn list_objects(state: &Arc<State>, r: S3Request, v2: bool) -> Result<Response, S3Error> {
    let bucket = r.bucket.clone();
    let prefix = r.q("prefix").unwrap_or("").to_string();
    let delimiter = r.q("delimiter").map(str::to_string);
    let max: usize = match r.q("max-keys") {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n.min(1000) as usize)
            .ok_or_else(|| {
                S3Error::invalid_argument(
                    "Provided max-keys not an integer or within integer range",
                )
                .field("ArgumentName", "max-keys")
                .field("ArgumentValue", v)
            })?,
        None => 1000,
    };
    let encoding = match r.q("encoding-type") {
        None => false,
        Some("url") => true,
        Some(other) => {
            return Err(
                S3Error::invalid_argument("Invalid Encoding Method specified in Request")
                    .field("ArgumentName", "encoding-type")
                    .field("ArgumentValue", other),
            )
        }
    };
    let token = if v2 { r.q("continuation-token") } else { None };
    let after = match token {
        Some(t) => decode_token(t)?,
        None if v2 => r.q("start-after").unwrap_or("").to_string(),
        None => r.q("marker").unwrap_or("").to_string(),
    };
    let (p, d, a) = (prefix.clone(), delimiter.clone(), after.clone());
    let page = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            page(c, &bucket, &p, d.as_deref(), &a, max)
        })
        .await?;
    let enc = |s: &str| {
        if encoding {
            wire::url_encode(s)
        } else {
            s.to_string()
        }
    };
    let fetch_owner = !v2 || r.q("fetch-owner") == Some("true");
    let doc = nimbus_protocol::xml_document("ListBucketResult", Some(S3_NAMESPACE), |w| {
        w.element("IsTruncated", wire::bool_text(page.truncated));
        if v2 {
            w.element_opt("ContinuationToken", token);
            if page.truncated {
                if let Some(last) = &page.last {
                    w.element("NextContinuationToken", &encode_token(last));
                }
            }
            if let Some(sa) = r.q("start-after") {
                w.element("StartAfter", &enc(sa));
            }
            w.element(
                "KeyCount",
                &(page.contents.len() + page.prefixes.len()).to_string(),
            );
        } else {
            w.element("Marker", &enc(r.q("marker").unwrap_or("")));
            if page.truncated {
                if let Some(last) = &page.last {
                    w.element("NextMarker", &enc(last));
                }
            }
        }
        w.element("Name", &r.bucket);
        w.element("Prefix", &enc(&prefix));
        if let Some(d) = &delimiter {
            w.element("Delimiter", &enc(d));
        }
        w.element("MaxKeys", &max.to_string());
        if encoding {
            w.element("EncodingType", "url");
        }
        for o in &page.contents {
            contents(w, o, &enc(&o.key), fetch_owner, &state.account_id);
        }
        for p in &page.prefixes {
            w.nested("CommonPrefixes", |w| {
                w.element("Prefix", &enc(p));
            });
        }
    });
    r.xml(doc)
}

/// One entry of `ListObjectVersions`.
struct VersionEntry {
    obj: Object,
    marker: bool,
    latest: bool,
    /// Newest first within a key: the current version, then by sequence.
    rank: i64,
}

pub async fn list_versions(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let bucket = r.bucket.clone();
    let prefix = r.q("prefix").unwrap_or("").to_string();
    let delimiter = r
        .q("delimiter")
        .map(str::to_string)
        .filter(|d| !d.is_empty());
    let max: usize = match r.q("max-keys") {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n.min(1000) as usize)
            .ok_or_else(|| {
                S3Error::invalid_argument(
                    "Provided max-keys not an integer or within integer range",
                )
            })?,
        None => 1000,
    };
    let key_marker = r.q("key-marker").unwrap_or("").to_string();
    let vid_marker = r
        .q("version-id-marker")
        .map(str::to_string)
        .filter(|v| !v.is_empty());
    let encoding = r.q("encoding-type") == Some("url");
    let p = prefix.clone();
    let km = key_marker.clone();
    let mut entries: Vec<VersionEntry> = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            let mut out = Vec::new();
            let mut s = c
                .prepare(
                    "SELECT key, blob, size, etag, modified_ms, meta, version_id FROM objects
                     WHERE bucket = ?1 AND key >= ?2 AND substr(key, 1, length(?3)) = ?3",
                )
                .map_err(internal)?;
            let rows = s
                .query_map(params![bucket, km, p], store::object_row)
                .map_err(internal)?;
            for o in rows {
                out.push(VersionEntry { obj: o.map_err(internal)?, marker: false, latest: true, rank: i64::MIN });
            }
            let mut s = c
                .prepare(
                    "SELECT key, COALESCE(blob, ''), size, etag, modified_ms, meta, version_id, delete_marker, seq
                     FROM versions WHERE bucket = ?1 AND key >= ?2 AND substr(key, 1, length(?3)) = ?3",
                )
                .map_err(internal)?;
            let rows = s
                .query_map(params![bucket, km, p], |r| {
                    Ok((store::object_row(r)?, r.get::<_, bool>(7)?, r.get::<_, i64>(8)?))
                })
                .map_err(internal)?;
            for row in rows {
                let (o, marker, seq) = row.map_err(internal)?;
                out.push(VersionEntry { obj: o, marker, latest: false, rank: -seq });
            }
            Ok(out)
        })
        .await?;
    entries.sort_by(|a, b| a.obj.key.cmp(&b.obj.key).then(a.rank.cmp(&b.rank)));
    // The newest entry of a key with no current version (a delete marker) is latest.
    for i in 0..entries.len() {
        if i == 0 || entries[i - 1].obj.key != entries[i].obj.key {
            entries[i].latest = true;
        }
    }
    // Position after the markers.
    let start = match &vid_marker {
        Some(v) => entries
            .iter()
            .position(|e| {
                e.obj.key == key_marker && e.obj.version_id.as_deref().unwrap_or("null") == v
            })
            .map(|i| i + 1)
            .unwrap_or(0),
        None if !key_marker.is_empty() => entries
            .iter()
            .position(|e| e.obj.key.as_str() > key_marker.as_str())
            .unwrap_or(entries.len()),
        None => 0,
    };
    let mut shown: Vec<&VersionEntry> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    for e in &entries[start..] {
        let cp = delimiter.as_deref().and_then(|d| {
            e.obj.key[prefix.len()..]
                .find(d)
                .map(|i| e.obj.key[..prefix.len() + i + d.len()].to_string())
        });
        if let Some(cp) = &cp {
            if prefixes.last() == Some(cp) {
                continue;
            }
        }
        if shown.len() + prefixes.len() >= max {
            truncated = true;
            break;
        }
        match cp {
            Some(cp) => prefixes.push(cp),
            None => shown.push(e),
        }
    }
    let enc = |s: &str| {
        if encoding {
            wire::url_encode(s)
        } else {
            s.to_string()
        }
    };
    let doc = nimbus_protocol::xml_document("ListVersionsResult", Some(S3_NAMESPACE), |w| {
        w.element("IsTruncated", wire::bool_text(truncated));
        w.element("KeyMarker", &enc(&key_marker));
        w.element("VersionIdMarker", vid_marker.as_deref().unwrap_or(""));
        if truncated {
            if let Some(last) = shown.last() {
                w.element("NextKeyMarker", &enc(&last.obj.key));
                w.element(
                    "NextVersionIdMarker",
                    last.obj.version_id.as_deref().unwrap_or("null"),
                );
            } else if let Some(cp) = prefixes.last() {
                w.element("NextKeyMarker", &enc(cp));
            }
        }
        w.element("Name", &r.bucket);
        w.element("Prefix", &enc(&prefix));
        if let Some(d) = &delimiter {
            w.element("Delimiter", &enc(d));
        }
        w.element("MaxKeys", &max.to_string());
        if encoding {
            w.element("EncodingType", "url");
        }
        for e in &shown {
            let o = &e.obj;
            let vid = o.version_id.as_deref().unwrap_or("null");
            if e.marker {
                w.nested("DeleteMarker", |w| {
                    w.element("Key", &enc(&o.key));
                    w.element("VersionId", vid);
                    w.element("IsLatest", wire::bool_text(e.latest));
                    w.element("LastModified", &wire::iso8601_ms(o.modified_ms));
                    w.nested("Owner", |w| {
                        w.element("ID", &state.account_id);
                        w.element("DisplayName", "nimbus");
                    });
                });
            } else {
                w.nested("Version", |w| {
                    w.element("Key", &enc(&o.key));
                    w.element("VersionId", vid);
                    w.element("IsLatest", wire::bool_text(e.latest));
                    w.element("LastModified", &wire::iso8601_ms(o.modified_ms));
                    w.element("ETag", &quoted(&o.etag));
                    w.element("Size", &o.size.to_string());
                    w.element(
                        "StorageClass",
                        o.meta.storage_class.as_deref().unwrap_or("STANDARD"),
                    );
                    w.nested("Owner", |w| {
                        w.element("ID", &state.account_id);
                        w.element("DisplayName", "nimbus");
                    });
                });
            }
        }
        for p in &prefixes {
            w.nested("CommonPrefixes", |w| {
                w.element("Prefix", &enc(p));
            });
        }
    });
    r.xml(doc)
}

fn contents(w: &mut XmlWriter, o: &Object, key: &str, owner: bool, account: &str) {
    w.nested("Contents", |w| {
        w.element("Key", key);
        w.element("LastModified", &wire::iso8601_ms(o.modified_ms));
        w.element("ETag", &quoted(&o.etag));
        if let Some((alg, _)) = &o.meta.checksum {
            w.element("ChecksumAlgorithm", alg);
            let kind = if o.meta.parts.is_some()
                && o.meta
                    .checksum
                    .as_ref()
                    .is_some_and(|(_, v)| v.contains('-'))
            {
                "COMPOSITE"
            } else {
                "FULL_OBJECT"
            };
            w.element("ChecksumType", kind);
        }
        w.element("Size", &o.size.to_string());
        if owner {
            w.nested("Owner", |w| {
                w.element("ID", account);
                w.element("DisplayName", "nimbus");
            });
        }
        w.element(
            "StorageClass",
            o.meta.storage_class.as_deref().unwrap_or("STANDARD"),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectMeta;

    fn db(keys: &[&str]) -> rusqlite::Connection {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        nimbus_store::migrate::migrate(&mut c, &store::SCHEMA).unwrap();
        for k in keys {
            let mut o = Object {
                key: k.to_string(),
                blob: "b".into(),
                size: 1,
                etag: "e".into(),
                modified_ms: 0,
                meta: ObjectMeta::default(),
                version_id: None,
            };
            store::put_object_row(&c, "bk", &mut o).unwrap();
        }
        c
    }

    fn names(p: &Page) -> (Vec<&str>, Vec<&str>) {
        (
            p.contents.iter().map(|o| o.key.as_str()).collect(),
            p.prefixes.iter().map(String::as_str).collect(),
        )
    }

    #[test]
    fn delimiters_roll_keys_into_common_prefixes() {
        let c = db(&["a/1", "a/2", "a/b/3", "b", "c/1", "d"]);
        let p = page(&c, "bk", "", Some("/"), "", 1000).unwrap();
        assert_eq!(names(&p), (vec!["b", "d"], vec!["a/", "c/"]));
        assert!(!p.truncated);
        let p = page(&c, "bk", "a/", Some("/"), "", 1000).unwrap();
        assert_eq!(names(&p), (vec!["a/1", "a/2"], vec!["a/b/"]));
    }

    #[test]
    fn pages_continue_after_the_last_entry() {
        let c = db(&["a/1", "a/2", "b", "c/1", "c/2", "d"]);
        let p = page(&c, "bk", "", Some("/"), "", 2).unwrap();
        assert_eq!(names(&p), (vec!["b"], vec!["a/"]));
        assert!(p.truncated);
        let p = page(&c, "bk", "", Some("/"), p.last.as_deref().unwrap(), 2).unwrap();
        assert_eq!(names(&p), (vec!["d"], vec!["c/"]));
        assert!(!p.truncated);
        let p = page(&c, "bk", "", None, "", 5).unwrap();
        assert!(p.truncated);
        assert_eq!(p.contents.len(), 5);
        let p = page(&c, "bk", "c", None, "", 5).unwrap();
        assert_eq!(names(&p).0, vec!["c/1", "c/2"]);
    }
}
