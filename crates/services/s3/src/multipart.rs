//! Multipart uploads: create, upload part (and part copy with a source range),
//! list parts and uploads, complete (ETag `<md5 of the part MD5s>-N`, composite
//! checksums), abort.
//!
//! Parts are blobs like objects. Completing streams the chosen parts into one
//! new blob (hashed, fsynced) and swaps the rows in one transaction: an upload
//! interrupted anywhere (even by `kill -9`) leaves either its parts or the
//! object, never a partial object.

use crate::error::{internal, S3Error};
use crate::notify::{self, Change};
use crate::objects::{self, base64_encode};
use crate::store::{self, Object, ObjectMeta};
use crate::wire::{self, quoted, S3Request};
use crate::State;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use md5::{Digest as _, Md5};
use nimbus_protocol::{ChecksumAlgorithm, S3_NAMESPACE};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

/// Every part but the last must be at least this large.
pub const MIN_PART: u64 = 5 * 1024 * 1024;

struct Upload {
    id: String,
    bucket: String,
    key: String,
    initiated_ms: i64,
    meta: ObjectMeta,
}

fn get_upload(
    c: &rusqlite::Connection,
    bucket: &str,
    key: &str,
    id: &str,
) -> Result<Upload, S3Error> {
    let row = c
        .query_row(
            "SELECT id, bucket, key, initiated_ms, meta FROM uploads WHERE id = ?1",
            [id],
            |r| {
                let meta: String = r.get(4)?;
                Ok(Upload {
                    id: r.get(0)?,
                    bucket: r.get(1)?,
                    key: r.get(2)?,
                    initiated_ms: r.get(3)?,
                    meta: serde_json::from_str(&meta).unwrap_or_default(),
                })
            },
        )
        .optional()
        .map_err(internal)?;
    match row {
        Some(u) if u.bucket == bucket && u.key == key => Ok(u),
        _ => Err(S3Error::no_such_upload(id)),
    }
}

pub async fn create(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let mut meta = objects::meta_from_headers(r.headers())?;
    if let Some(alg) = r.header("x-amz-checksum-algorithm") {
        let a = ChecksumAlgorithm::from_name(&alg.to_ascii_uppercase()).ok_or_else(|| {
            S3Error::invalid_request(format!("Checksum algorithm {alg} is not supported"))
        })?;
        meta.checksum = Some((a.name().to_string(), String::new()));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (bucket, key, uid) = (r.bucket.clone(), r.key.clone(), id.clone());
    state
        .store
        .tx(move |tx, _| {
            store::require_bucket(tx, &bucket)?;
            tx.execute(
                "INSERT INTO uploads(id, bucket, key, initiated_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![uid, bucket, key, store::now_ms(), serde_json::to_string(&meta).map_err(internal)?],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await?;
    let mut b = r
        .ok(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/xml");
    if let Some(alg) = r.header("x-amz-checksum-algorithm") {
        b = b.header("x-amz-checksum-algorithm", alg.to_ascii_uppercase());
    }
    let doc =
        nimbus_protocol::xml_document("InitiateMultipartUploadResult", Some(S3_NAMESPACE), |w| {
            w.element("Bucket", &r.bucket);
            w.element("Key", &r.key);
            w.element("UploadId", &id);
        });
    b.body(axum::body::Body::from(doc)).map_err(internal)
}

fn part_number(r: &S3Request) -> Result<i64, S3Error> {
    r.q("partNumber")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|n| (1..=10000).contains(n))
        .ok_or_else(|| {
            S3Error::invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive",
            )
            .field("ArgumentName", "partNumber")
            .field("ArgumentValue", r.q("partNumber").unwrap_or(""))
        })
}

/// Record a staged part (replacing an earlier upload of the same number).
async fn save_part(
    state: &Arc<State>,
    r: &S3Request,
    staged: store::Staged,
    checksum: Option<(ChecksumAlgorithm, String)>,
) -> Result<String, S3Error> {
    let pn = part_number(r)?;
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let id = r.q("uploadId").unwrap_or("").to_string();
    let etag = hex::encode(staged.md5);
    let e = etag.clone();
    state
        .store
        .tx(move |tx, st| {
            if let Err(e) = store::require_bucket(tx, &bucket).and_then(|_| get_upload(tx, &bucket, &key, &id)) {
                st.discard(&staged);
                return Err(e);
            }
            st.link(tx, &staged)?;
            let old: Option<String> = tx
                .query_row(
                    "SELECT blob FROM parts WHERE upload_id = ?1 AND part_number = ?2",
                    params![id, pn],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            tx.execute(
                "INSERT OR REPLACE INTO parts(upload_id, part_number, blob, size, etag, checksum, modified_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    pn,
                    staged.sha256,
                    staged.size as i64,
                    e,
                    checksum.as_ref().map(|(a, v)| format!("{}:{v}", a.name())),
                    store::now_ms()
                ],
            )
            .map_err(internal)?;
            if let Some(old) = old.filter(|o| *o != staged.sha256) {
                st.release(tx, &old)?;
            }
            Ok(())
        })
        .await?;
    Ok(etag)
}

pub async fn upload_part(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    part_number(&r)?;
    {
        let (bucket, key) = (r.bucket.clone(), r.key.clone());
        let id = r.q("uploadId").unwrap_or("").to_string();
        state
            .store
            .read(move |c| {
                store::require_bucket(c, &bucket)?;
                get_upload(c, &bucket, &key, &id).map(|_| ())
            })
            .await?;
    }
    let (staged, checksum) = objects::stage_body(state, &mut r, crate::MAX_PUT).await?;
    let etag = save_part(state, &r, staged, checksum.clone()).await?;
    let mut b = r.ok(StatusCode::OK).header("etag", quoted(&etag));
    if let Some((alg, v)) = &checksum {
        b = b.header(alg.header_name(), v.as_str());
    }
    b.body(axum::body::Body::empty()).map_err(internal)
}

pub async fn upload_part_copy(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    part_number(&r)?;
    let (src_bucket, src_key) = objects::copy_source(&r)?;
    let src_version = objects::copy_source_version(&r);
    let st = state.store.clone();
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let id = r.q("uploadId").unwrap_or("").to_string();
    let (src, file) = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            get_upload(c, &bucket, &key, &id)?;
            store::require_bucket(c, &src_bucket)?;
            let src =
                objects::find_version(c, &src_bucket, &src_key, src_version.as_deref(), false)?;
            let f = st.open_blob(c, &src.blob)?;
            Ok((src, f))
        })
        .await?;
    let (start, len) = match r.header("x-amz-copy-source-range") {
        Some(spec) => {
            let bad = || {
                S3Error::invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
                    .field("ArgumentName", "x-amz-copy-source-range")
                    .field("ArgumentValue", spec.to_string())
            };
            let (a, b) = spec
                .strip_prefix("bytes=")
                .and_then(|s| s.split_once('-'))
                .ok_or_else(bad)?;
            let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if b < a || b >= src.size {
                return Err(S3Error::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                ));
            }
            (a, b - a + 1)
        }
        None => (0, src.size),
    };
    let body = objects::file_body(file, start, len)?;
    let stream = futures_util::StreamExt::map(body.into_data_stream(), |r| r.map_err(internal));
    let staged = state.store.stage(stream, None, crate::MAX_PUT).await?;
    let etag = save_part(state, &r, staged, None).await?;
    let doc = nimbus_protocol::xml_document("CopyPartResult", Some(S3_NAMESPACE), |w| {
        w.element("LastModified", &wire::iso8601_ms(store::now_ms()));
        w.element("ETag", &quoted(&etag));
    });
    r.xml(doc)
}

#[derive(Deserialize)]
struct CompleteRequest {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletePart>,
}

#[derive(Deserialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    number: i64,
    #[serde(rename = "ETag", default)]
    etag: Option<String>,
}

struct PartRow {
    number: i64,
    blob: String,
    size: u64,
    etag: String,
    checksum: Option<String>,
}

fn invalid_part(n: i64) -> S3Error {
    S3Error::new(
        StatusCode::BAD_REQUEST,
        "InvalidPart",
        "One or more of the specified parts could not be found.  The part may not have been \
         uploaded, or the specified entity tag may not have matched the part's entity tag.",
    )
    .field("PartNumber", n.to_string())
}

pub async fn complete(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let req: CompleteRequest = nimbus_protocol::decode_xml(&body).map_err(S3Error::from)?;
    if req.parts.is_empty() {
        return Err(S3Error::from(nimbus_protocol::malformed_xml()));
    }
    for w in req.parts.windows(2) {
        if w[1].number <= w[0].number {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidPartOrder",
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
            ));
        }
    }
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let id = r.q("uploadId").unwrap_or("").to_string();
    let st = state.store.clone();
    let wanted: Vec<(i64, Option<String>)> = req
        .parts
        .iter()
        .map(|p| (p.number, p.etag.clone()))
        .collect();
    // Pick the parts and open their blobs (under the lock: they cannot go away).
    let (upload, parts, files) = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            let upload = get_upload(c, &bucket, &key, &id)?;
            let mut parts = Vec::new();
            let mut files = Vec::new();
            for (n, etag) in &wanted {
                let row = c
                    .query_row(
                        "SELECT part_number, blob, size, etag, checksum FROM parts WHERE upload_id = ?1 AND part_number = ?2",
                        params![id, n],
                        |r| {
                            Ok(PartRow {
                                number: r.get(0)?,
                                blob: r.get(1)?,
                                size: r.get::<_, i64>(2)? as u64,
                                etag: r.get(3)?,
                                checksum: r.get(4)?,
                            })
                        },
                    )
                    .optional()
                    .map_err(internal)?
                    .ok_or_else(|| invalid_part(*n))?;
                if etag.as_deref().is_some_and(|e| e.trim_matches('"') != row.etag) {
                    return Err(invalid_part(*n));
                }
                files.push(st.open_blob(c, &row.blob)?);
                parts.push(row);
            }
            Ok((upload, parts, files))
        })
        .await?;
    let last = parts.len() - 1;
    for (i, p) in parts.iter().enumerate() {
        if i != last && p.size < MIN_PART {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed object size.",
            )
            .field("ProposedSize", p.size.to_string())
            .field("MinSizeAllowed", MIN_PART.to_string())
            .field("PartNumber", p.number.to_string())
            .field("ETag", quoted(&p.etag)));
        }
    }
    // ETag: MD5 of the concatenated part MD5s, then `-N`.
    let mut md5 = Md5::new();
    for p in &parts {
        md5.update(hex::decode(&p.etag).map_err(internal)?);
    }
    let etag = format!("{}-{}", hex::encode(md5.finalize()), parts.len());
    // Composite checksum, when the upload asked for one and every part has it.
    let mut meta = upload.meta.clone();
    meta.checksum = match upload
        .meta
        .checksum
        .as_ref()
        .and_then(|(a, _)| ChecksumAlgorithm::from_name(a))
    {
        Some(alg) => {
            let mut h = alg.hasher();
            let mut all = true;
            for p in &parts {
                match p.checksum.as_deref().and_then(|c| c.split_once(':')) {
                    Some((a, v)) if a == alg.name() => match alg.decode_value(v) {
                        Ok(raw) => h.update(&raw),
                        Err(_) => all = false,
                    },
                    _ => all = false,
                }
            }
            all.then(|| {
                (
                    alg.name().to_string(),
                    format!("{}-{}", base64_encode(&h.finalize()), parts.len()),
                )
            })
        }
        None => None,
    };
    meta.parts = Some(parts.len() as u32);
    // Concatenate the parts into the object's blob.
    let total: u64 = parts.iter().map(|p| p.size).sum();
    let stream = concat(files);
    let staged = state.store.stage(stream, None, u64::MAX).await?;
    if staged.size != total {
        state.store.discard(&staged);
        return Err(internal(
            "multipart parts changed size while being assembled",
        ));
    }
    let obj = Object {
        key: upload.key.clone(),
        blob: staged.sha256.clone(),
        size: total,
        etag: etag.clone(),
        modified_ms: store::now_ms(),
        meta,
        version_id: None,
    };
    let change = Change::created("CompleteMultipartUpload", &r, &obj);
    let upload_id = upload.id.clone();
    let bucket = r.bucket.clone();
    let checksum = obj.meta.checksum.clone();
    let (queued, version_id) = state
        .store
        .tx(move |tx, st| {
            let b = store::require_bucket(tx, &bucket)?;
            // Still there? (a concurrent abort or complete wins otherwise)
            if let Err(e) = get_upload(tx, &bucket, &obj.key, &upload_id) {
                st.discard(&staged);
                return Err(e);
            }
            st.link(tx, &staged)?;
            let mut obj = obj;
            let old = store::put_object_row(tx, &bucket, &mut obj)?;
            let part_blobs = drop_upload(tx, &upload_id)?;
            let queued = notify::enqueue(tx, &b, change.with_object(&obj))?;
            for blob in part_blobs.into_iter().chain(old) {
                st.release(tx, &blob)?;
            }
            Ok((queued, obj.version_id))
        })
        .await?;
    if queued {
        state.notify.wake();
    }
    let doc =
        nimbus_protocol::xml_document("CompleteMultipartUploadResult", Some(S3_NAMESPACE), |w| {
            w.element("Location", &format!("/{}/{}", r.bucket, r.key));
            w.element("Bucket", &r.bucket);
            w.element("Key", &r.key);
            w.element("ETag", &quoted(&etag));
            if let Some((alg, v)) = &checksum {
                w.element(&format!("Checksum{alg}"), v);
                w.element("ChecksumType", "COMPOSITE");
            }
        });
    let mut b = r
        .ok(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/xml");
    if let Some(v) = &version_id {
        b = b.header("x-amz-version-id", v.as_str());
    }
    b.body(axum::body::Body::from(doc)).map_err(internal)
}

/// The parts' files one after the other, read on blocking threads.
fn concat(
    files: Vec<store::Blob>,
) -> impl futures_util::Stream<Item = Result<Bytes, S3Error>> + Send {
    let files: VecDeque<store::Blob> = files.into();
    futures_util::stream::unfold(files, |mut files| async move {
        loop {
            let f = files.pop_front()?;
            let res = tokio::task::spawn_blocking(move || {
                let mut f = f;
                let mut buf = vec![0u8; 1 << 20];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>((f, buf))
            })
            .await;
            match res {
                Ok(Ok((f, buf))) if !buf.is_empty() => {
                    files.push_front(f);
                    return Some((Ok(Bytes::from(buf)), files));
                }
                // This part is done: on to the next.
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Some((Err(internal(e)), VecDeque::new())),
                Err(e) => return Some((Err(internal(e)), VecDeque::new())),
            }
        }
    })
}

/// Delete an upload and its parts; returns the part blobs to release.
pub fn drop_upload(tx: &rusqlite::Connection, id: &str) -> Result<Vec<String>, S3Error> {
    let blobs: Vec<String> = {
        let mut s = tx
            .prepare("SELECT blob FROM parts WHERE upload_id = ?1")
            .map_err(internal)?;
        let rows = s.query_map([id], |r| r.get(0)).map_err(internal)?;
        rows.collect::<Result<_, _>>().map_err(internal)?
    };
    tx.execute("DELETE FROM parts WHERE upload_id = ?1", [id])
        .map_err(internal)?;
    tx.execute("DELETE FROM uploads WHERE id = ?1", [id])
        .map_err(internal)?;
    Ok(blobs)
}

pub async fn abort(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let id = r.q("uploadId").unwrap_or("").to_string();
    state
        .store
        .tx(move |tx, st| {
            store::require_bucket(tx, &bucket)?;
            get_upload(tx, &bucket, &key, &id)?;
            for blob in drop_upload(tx, &id)? {
                st.release(tx, &blob)?;
            }
            Ok(())
        })
        .await?;
    r.empty(StatusCode::NO_CONTENT)
}

fn int_param(r: &S3Request, name: &str, default: i64, max: i64) -> Result<i64, S3Error> {
    match r.q(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n.min(max))
            .ok_or_else(|| {
                S3Error::invalid_argument(format!(
                    "Provided {name} not an integer or within integer range"
                ))
                .field("ArgumentName", name.to_string())
                .field("ArgumentValue", v.to_string())
            }),
    }
}

pub async fn list_parts(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let max = int_param(&r, "max-parts", 1000, 1000)?;
    let marker = int_param(&r, "part-number-marker", 0, 10000)?;
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let id = r.q("uploadId").unwrap_or("").to_string();
    let (upload, mut parts) = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            let u = get_upload(c, &bucket, &key, &id)?;
            let mut s = c
                .prepare(
                    "SELECT part_number, size, etag, checksum, modified_ms FROM parts
                     WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3",
                )
                .map_err(internal)?;
            let rows = s
                .query_map(params![id, marker, max + 1], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(internal)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(internal)?;
            Ok((u, rows))
        })
        .await?;
    let truncated = parts.len() as i64 > max;
    parts.truncate(max as usize);
    let doc = nimbus_protocol::xml_document("ListPartsResult", Some(S3_NAMESPACE), |w| {
        w.element("Bucket", &upload.bucket);
        w.element("Key", &upload.key);
        w.element("UploadId", &upload.id);
        w.element("PartNumberMarker", &marker.to_string());
        if let Some((n, ..)) = parts.last() {
            w.element("NextPartNumberMarker", &n.to_string());
        }
        w.element("MaxParts", &max.to_string());
        w.element("IsTruncated", wire::bool_text(truncated));
        w.element("StorageClass", "STANDARD");
        if let Some((alg, _)) = &upload.meta.checksum {
            w.element("ChecksumAlgorithm", alg);
        }
        for (n, size, etag, checksum, modified) in &parts {
            w.nested("Part", |w| {
                w.element("PartNumber", &n.to_string());
                w.element("LastModified", &wire::iso8601_ms(*modified));
                w.element("ETag", &quoted(etag));
                w.element("Size", &size.to_string());
                if let Some((a, v)) = checksum.as_deref().and_then(|c| c.split_once(':')) {
                    w.element(&format!("Checksum{a}"), v);
                }
            });
        }
    });
    r.xml(doc)
}

pub async fn list_uploads(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let max = int_param(&r, "max-uploads", 1000, 1000)?;
    let prefix = r.q("prefix").unwrap_or("").to_string();
    let key_marker = r.q("key-marker").unwrap_or("").to_string();
    let bucket = r.bucket.clone();
    let (p, km) = (prefix.clone(), key_marker.clone());
    let mut uploads: Vec<Upload> = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            let mut s = c
                .prepare(
                    "SELECT id, bucket, key, initiated_ms, meta FROM uploads
                     WHERE bucket = ?1 AND key > ?2 AND substr(key, 1, length(?3)) = ?3
                     ORDER BY key, initiated_ms LIMIT ?4",
                )
                .map_err(internal)?;
            let rows = s
                .query_map(params![bucket, km, p, max + 1], |r| {
                    let meta: String = r.get(4)?;
                    Ok(Upload {
                        id: r.get(0)?,
                        bucket: r.get(1)?,
                        key: r.get(2)?,
                        initiated_ms: r.get(3)?,
                        meta: serde_json::from_str(&meta).unwrap_or_default(),
                    })
                })
                .map_err(internal)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(internal)?;
            Ok(rows)
        })
        .await?;
    let truncated = uploads.len() as i64 > max;
    uploads.truncate(max as usize);
    let doc =
        nimbus_protocol::xml_document("ListMultipartUploadsResult", Some(S3_NAMESPACE), |w| {
            w.element("Bucket", &r.bucket);
            w.element("KeyMarker", &key_marker);
            w.element("UploadIdMarker", r.q("upload-id-marker").unwrap_or(""));
            if truncated {
                if let Some(u) = uploads.last() {
                    w.element("NextKeyMarker", &u.key);
                    w.element("NextUploadIdMarker", &u.id);
                }
            }
            w.element("Prefix", &prefix);
            w.element("MaxUploads", &max.to_string());
            w.element("IsTruncated", wire::bool_text(truncated));
            for u in &uploads {
                w.nested("Upload", |w| {
                    w.element("Key", &u.key);
                    w.element("UploadId", &u.id);
                    w.element("Initiated", &wire::iso8601_ms(u.initiated_ms));
                    w.element("StorageClass", "STANDARD");
                    if let Some((alg, _)) = &u.meta.checksum {
                        w.element("ChecksumAlgorithm", alg);
                    }
                });
            }
        });
    r.xml(doc)
}
