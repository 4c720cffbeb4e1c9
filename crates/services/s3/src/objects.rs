//! Objects: PUT (streamed, hashed, fsynced), GET/HEAD (conditional, ranged),
//! DELETE, batch delete, copy, tagging.

use crate::error::{internal, S3Error};
use crate::notify::{self, Change};
use crate::store::{self, Object, ObjectMeta, Staged};
use crate::wire::{self, quoted, S3Request};
use crate::State;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use nimbus_protocol::{
    ChecksumAlgorithm, DeclaredChecksums, TrailingChecksum, XmlWriter, S3_NAMESPACE,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// Content headers and user metadata of a request (PUT, CreateMultipartUpload,
/// CopyObject with `REPLACE`).
pub fn meta_from_headers(h: &HeaderMap) -> Result<ObjectMeta, S3Error> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut user = BTreeMap::new();
    let mut user_size = 0usize;
    for (name, value) in h {
        if let Some(k) = name.as_str().strip_prefix("x-amz-meta-") {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            user_size += k.len() + v.len();
            user.insert(k.to_string(), v);
        }
    }
    if user_size > 2048 {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size.",
        )
        .field("Size", user_size.to_string())
        .field("MaxSizeAllowed", "2048"));
    }
    let tags = match get("x-amz-tagging") {
        Some(t) => parse_tag_query(&t)?,
        None => BTreeMap::new(),
    };
    Ok(ObjectMeta {
        content_type: get("content-type"),
        content_encoding: get("content-encoding").filter(|e| !e.is_empty()),
        content_disposition: get("content-disposition"),
        content_language: get("content-language"),
        cache_control: get("cache-control"),
        expires: get("expires"),
        storage_class: get("x-amz-storage-class").filter(|s| s != "STANDARD"),
        user,
        checksum: None,
        parts: None,
        tags,
    })
}

fn parse_tag_query(t: &str) -> Result<BTreeMap<String, String>, S3Error> {
    let tags: BTreeMap<String, String> =
        form_urlencoded::parse(t.as_bytes()).into_owned().collect();
    validate_tags(&tags)?;
    Ok(tags)
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), S3Error> {
    if tags.len() > 10 {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Object tags cannot be greater than 10",
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidTag",
                "The TagKey you have provided is invalid",
            ));
        }
    }
    Ok(())
}

/// Which flexible checksum a request wants computed: the one it declares in a
/// header, the one its trailer will carry, or the one it names.
pub fn wanted_checksum(
    r: &S3Request,
    declared: &DeclaredChecksums,
) -> Result<Option<ChecksumAlgorithm>, S3Error> {
    if let Some((alg, _)) = &declared.checksum {
        return Ok(Some(*alg));
    }
    for h in [
        "x-amz-trailer",
        "x-amz-sdk-checksum-algorithm",
        "x-amz-checksum-algorithm",
    ] {
        if let Some(v) = r.header(h) {
            let v = v.trim();
            let alg = ChecksumAlgorithm::from_header_name(&v.to_ascii_lowercase())
                .or_else(|| ChecksumAlgorithm::from_name(&v.to_ascii_uppercase()));
            match alg {
                Some(a) => return Ok(Some(a)),
                None if h == "x-amz-trailer" => {}
                None => {
                    return Err(S3Error::invalid_request(format!(
                        "Checksum algorithm {v} is not supported"
                    )))
                }
            }
        }
    }
    Ok(None)
}

/// Read a body into a staged blob and check every declared digest.
pub async fn stage_body(
    state: &State,
    r: &mut S3Request,
    max: u64,
) -> Result<(Staged, Option<(ChecksumAlgorithm, String)>), S3Error> {
    let declared = DeclaredChecksums::from_headers(r.headers()).map_err(S3Error::from)?;
    let alg = wanted_checksum(r, &declared)?;
    if let Some(len) = r
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max {
            return Err(S3Error::entity_too_large(max));
        }
    }
    let trailing = r.parts.extensions.get::<TrailingChecksum>().cloned();
    let stream = r.take_stream();
    let staged = state.store.stage(stream, alg, max).await?;
    let bad = |e: S3Error| {
        state.store.discard(&staged);
        e
    };
    if let Some(md5) = &declared.content_md5 {
        if md5.as_slice() != staged.md5 {
            return Err(bad(S3Error::new(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
            )));
        }
    }
    let computed = staged
        .checksum
        .as_ref()
        .map(|(a, v)| (*a, base64_encode(v)));
    if let Some((alg, want)) = &declared.checksum {
        if staged.checksum.as_ref().map(|(_, v)| v) != Some(want) {
            return Err(bad(S3Error::from(alg.bad_digest())));
        }
    }
    if let Some((alg, value)) = trailing.as_ref().and_then(|t| t.get()) {
        // The edge verified it as the body ended; it is what the client sent.
        return Ok((staged, Some((alg, value.to_string()))));
    }
    Ok((staged, computed))
}

pub fn base64_encode(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v)
}

pub async fn put_object(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let bucket = r.bucket.clone();
    {
        let b = bucket.clone();
        state
            .store
            .read(move |c| store::require_bucket(c, &b).map(|_| ()))
            .await?;
    }
    let mut meta = meta_from_headers(r.headers())?;
    let (staged, checksum) = stage_body(state, &mut r, crate::MAX_PUT).await?;
    meta.checksum = checksum
        .as_ref()
        .map(|(a, v)| (a.name().to_string(), v.clone()));
    let if_none_match = r.header("if-none-match").map(str::to_string);
    let if_match = r.header("if-match").map(str::to_string);
    let obj = Object {
        key: r.key.clone(),
        blob: staged.sha256.clone(),
        size: staged.size,
        etag: hex::encode(staged.md5),
        modified_ms: store::now_ms(),
        meta,
        version_id: None,
    };
    let change = Change::created("Put", &r, &obj);
    let etag = obj.etag.clone();
    let version_id = commit_object(state, bucket, staged, obj, change, move |existing, key| {
        check_write_conditions(existing, if_none_match.as_deref(), if_match.as_deref(), key)
    })
    .await?;
    let mut resp = r.ok(StatusCode::OK).header("etag", quoted(&etag));
    if let Some(v) = &version_id {
        resp = resp.header("x-amz-version-id", v.as_str());
    }
    if let Some((alg, v)) = &checksum {
        resp = resp.header(alg.header_name(), v.as_str());
    }
    resp.body(Body::empty()).map_err(internal)
}

/// Commit a staged body as `obj` in `bucket` with its notification (PUT,
/// browser POST), in one transaction: `check` sees the current object first
/// (conditional writes); on any refusal the staged file is dropped. Answers the
/// version id written (versioned buckets).
pub async fn commit_object(
    state: &Arc<State>,
    bucket: String,
    staged: Staged,
    obj: Object,
    change: Change,
    check: impl FnOnce(&Option<Object>, &str) -> Result<(), S3Error> + Send + 'static,
) -> Result<Option<String>, S3Error> {
    let (queued, version_id) = state
        .store
        .tx(move |tx, st| {
            let mut obj = obj;
            let b = match store::require_bucket(tx, &bucket) {
                Ok(b) => b,
                Err(e) => {
                    st.discard(&staged);
                    return Err(e);
                }
            };
            let existing = store::get_object(tx, &bucket, &obj.key)?;
            if let Err(e) = check(&existing, &obj.key) {
                st.discard(&staged);
                return Err(e);
            }
            st.link(tx, &staged)?;
            let release = store::put_object_row(tx, &bucket, &mut obj)?;
            let queued = notify::enqueue(tx, &b, change.with_object(&obj))?;
            for old in release {
                st.release(tx, &old)?;
            }
            Ok((queued, obj.version_id))
        })
        .await?;
    if queued {
        state.notify.wake();
    }
    Ok(version_id)
}

/// Conditional writes: `If-None-Match: *` (refuse to overwrite) and `If-Match`.
fn check_write_conditions(
    existing: &Option<Object>,
    if_none_match: Option<&str>,
    if_match: Option<&str>,
    key: &str,
) -> Result<(), S3Error> {
    if let Some(inm) = if_none_match {
        if inm.trim() != "*" {
            return Err(S3Error::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
            )
            .field("Header", "If-None-Match"));
        }
        if existing.is_some() {
            return Err(S3Error::precondition_failed("If-None-Match"));
        }
    }
    if let Some(im) = if_match {
        match existing {
            None => return Err(S3Error::no_such_key(key)),
            Some(o) if !etag_matches(im, &o.etag) => {
                return Err(S3Error::precondition_failed("If-Match"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/").trim_matches('"') == etag
    })
}

/// GET/HEAD conditions, as S3 evaluates them: a failed `If-Match` or
/// `If-Unmodified-Since` is 412, a failed `If-None-Match` or `If-Modified-Since`
/// is 304 (`If-Match` true makes `If-Unmodified-Since` moot, `If-None-Match`
/// false makes `If-Modified-Since` moot).
fn check_read_conditions(h: &HeaderMap, obj: &Object, prefix: &str) -> Result<(), S3Error> {
    let get = |n: &str| h.get(format!("{prefix}{n}")).and_then(|v| v.to_str().ok());
    let modified_s = obj.modified_ms / 1000;
    let copy = !prefix.is_empty();
    let failed = |cond: &str| S3Error::precondition_failed(cond);
    let not_modified = || {
        if copy {
            S3Error::precondition_failed("x-amz-copy-source-If-None-Match")
        } else {
            S3Error::not_modified()
        }
    };
    let im = get("if-match");
    if let Some(im) = im {
        if !etag_matches(im, &obj.etag) {
            return Err(failed("If-Match"));
        }
    } else if let Some(t) = get("if-unmodified-since").and_then(wire::parse_http_date) {
        if modified_s > t.unix_timestamp() {
            return Err(failed("If-Unmodified-Since"));
        }
    }
    let inm = get("if-none-match");
    if let Some(inm) = inm {
        if etag_matches(inm, &obj.etag) {
            return Err(not_modified());
        }
    } else if let Some(t) = get("if-modified-since").and_then(wire::parse_http_date) {
        if modified_s <= t.unix_timestamp() {
            return Err(not_modified());
        }
    }
    Ok(())
}

/// A `Range: bytes=…` header against an object of `size` bytes: `None` for the
/// whole object (no header, or one S3 ignores), else the inclusive range.
pub fn parse_range(spec: &str, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // S3 serves the whole object for multiple ranges.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(|| invalid_range(size))?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| invalid_range(size))?;
        if n == 0 || size == 0 {
            return Err(invalid_range(size));
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| invalid_range(size))?;
        let end: u64 = if b.is_empty() {
            u64::MAX
        } else {
            b.parse().map_err(|_| invalid_range(size))?
        };
        if end < start {
            return Ok(None);
        }
        if start >= size {
            return Err(invalid_range(size));
        }
        (start, end.min(size - 1))
    };
    Ok(Some(range))
}

fn invalid_range(size: u64) -> S3Error {
    S3Error::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "InvalidRange",
        "The requested range is not satisfiable",
    )
    .field("RangeRequested", "")
    .field("ActualObjectSize", size.to_string())
}

/// The headers describing an object (GET, HEAD).
fn object_headers(
    mut b: http::response::Builder,
    obj: &Object,
    checksum_mode: bool,
) -> http::response::Builder {
    let m = &obj.meta;
    b = b
        .header("etag", quoted(&obj.etag))
        .header("last-modified", wire::http_date_ms(obj.modified_ms))
        .header("accept-ranges", "bytes")
        .header(
            "content-type",
            m.content_type.as_deref().unwrap_or("binary/octet-stream"),
        );
    for (name, v) in [
        ("content-encoding", &m.content_encoding),
        ("content-disposition", &m.content_disposition),
        ("content-language", &m.content_language),
        ("cache-control", &m.cache_control),
        ("expires", &m.expires),
        ("x-amz-storage-class", &m.storage_class),
    ] {
        if let Some(v) = v {
            b = b.header(name, v.as_str());
        }
    }
    for (k, v) in &m.user {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            b = b.header(format!("x-amz-meta-{k}"), v);
        }
    }
    if !m.tags.is_empty() {
        b = b.header("x-amz-tagging-count", m.tags.len().to_string());
    }
    if let Some(n) = m.parts {
        b = b.header("x-amz-mp-parts-count", n.to_string());
    }
    if let Some(v) = &obj.version_id {
        b = b.header("x-amz-version-id", v.as_str());
    }
    if checksum_mode {
        if let Some((alg, v)) = &m.checksum {
            if let Some(a) = ChecksumAlgorithm::from_name(alg) {
                b = b.header(a.header_name(), v.as_str());
                let kind = if v.contains('-') {
                    "COMPOSITE"
                } else {
                    "FULL_OBJECT"
                };
                b = b.header("x-amz-checksum-type", kind);
            }
        }
    }
    b
}

/// The object a read names: the current version, or `versionId`'s.
pub fn find_version(
    c: &rusqlite::Connection,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    head: bool,
) -> Result<Object, S3Error> {
    let Some(v) = version else {
        return store::get_object(c, bucket, key)?.ok_or_else(|| S3Error::no_such_key(key));
    };
    match store::get_version(c, bucket, key, v)? {
        Some((_, true)) => Err(S3Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        )
        .field("Method", if head { "HEAD" } else { "GET" })
        .field("ResourceType", "DeleteMarker")),
        Some((o, false)) => Ok(o),
        None => Err(S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchVersion",
            "The specified version does not exist.",
        )
        .field("Key", key.to_string())
        .field("VersionId", v.to_string())),
    }
}

pub async fn get_object(state: &Arc<State>, r: S3Request, head: bool) -> Result<Response, S3Error> {
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let version = r.q("versionId").map(str::to_string);
    let st = state.store.clone();
    let (obj, file) = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            let obj = find_version(c, &bucket, &key, version.as_deref(), head)?;
            // Opened under the lock: the blob cannot be reclaimed in between, and
            // an open file outlives its unlinking.
            let file = if head {
                None
            } else {
                Some(st.open_blob(c, &obj.blob)?)
            };
            Ok((obj, file))
        })
        .await?;
    check_read_conditions(r.headers(), &obj, "")?;
    let checksum_mode = r
        .header("x-amz-checksum-mode")
        .is_some_and(|v| v.eq_ignore_ascii_case("ENABLED"));
    let mut range = match r.header("range") {
        Some(spec) => parse_range(spec, obj.size)?,
        None => None,
    };
    if let Some(pn) = r.q("partNumber") {
        // Only whole objects (one part) are addressed by part number here.
        let pn: u32 = pn
            .parse()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| {
                S3Error::invalid_argument(
                    "Part number must be an integer between 1 and 10000, inclusive",
                )
            })?;
        let parts = obj.meta.parts.unwrap_or(1);
        if pn > parts {
            return Err(S3Error::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidPartNumber",
                "The requested partnumber is not satisfiable",
            )
            .field("PartNumberRequested", pn.to_string())
            .field("ActualPartCount", parts.to_string()));
        }
        if parts > 1 {
            return Err(S3Error::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "Nimbus does not serve the parts of a completed multipart object by partNumber; \
                 use a Range.",
            ));
        }
        if obj.meta.parts.is_none() && obj.size > 0 {
            range = Some((0, obj.size - 1));
        }
    }
    let mut b = object_headers(r.ok(StatusCode::OK), &obj, checksum_mode && range.is_none());
    // response-* overrides of a GET.
    for (q, h) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(v) = r.q(q) {
            if let Some(hs) = b.headers_mut() {
                hs.insert(h, wire::header_value(v)?);
            }
        }
    }
    let (start, len) = match range {
        Some((s, e)) => {
            b = b
                .status(StatusCode::PARTIAL_CONTENT)
                .header("content-range", format!("bytes {s}-{e}/{}", obj.size));
            (s, e - s + 1)
        }
        None => (0, obj.size),
    };
    b = b.header("content-length", len.to_string());
    let body = match file {
        Some(f) if !head => file_body(f, start, len)?,
        _ => Body::empty(),
    };
    b.body(body).map_err(internal)
}

/// Stream `len` bytes of a blob from `start`: a small one at once, a file 256
/// KiB at a time, reading on a blocking thread.
pub fn file_body(mut file: store::Blob, start: u64, len: u64) -> Result<Body, S3Error> {
    if let store::Blob::Small(c) = &file {
        let data = c.get_ref();
        let s = (start as usize).min(data.len());
        let e = (s + len as usize).min(data.len());
        return Ok(Body::from(data.slice(s..e)));
    }
    file.seek(SeekFrom::Start(start)).map_err(internal)?;
    let stream = futures_util::stream::unfold((Some(file), len), |(file, left)| async move {
        let file = file?;
        if left == 0 {
            return None;
        }
        let want = left.min(256 * 1024) as usize;
        let res = tokio::task::spawn_blocking(move || {
            let mut f = file;
            let mut buf = vec![0u8; want];
            let mut got = 0;
            while got < want {
                match f.read(&mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(got);
            Ok((f, buf))
        })
        .await;
        match res {
            Ok(Ok((f, buf))) if !buf.is_empty() => {
                let n = buf.len() as u64;
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buf)),
                    (Some(f), left - n),
                ))
            }
            Ok(Ok(_)) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob shorter than its object",
                )),
                (None, 0),
            )),
            Ok(Err(e)) => Some((Err(e), (None, 0))),
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), (None, 0))),
        }
    });
    Ok(Body::from_stream(stream))
}

pub async fn delete_object(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let version = r.q("versionId").map(str::to_string);
    let change = Change::removed(&r, &key);
    let (d, queued) = state
        .store
        .tx(move |tx, st| delete_one(tx, st, &bucket, &key, version.as_deref(), change))
        .await?;
    if queued {
        state.notify.wake();
    }
    let mut b = r.ok(StatusCode::NO_CONTENT);
    if let Some(v) = &d.version_id {
        b = b.header("x-amz-version-id", v.as_str());
    }
    if d.delete_marker {
        b = b.header("x-amz-delete-marker", "true");
    }
    b.body(Body::empty()).map_err(internal)
}

/// Delete one key or version (absent is fine, as S3 answers); what was done and
/// whether a notification was queued.
fn delete_one(
    tx: &rusqlite::Transaction<'_>,
    st: &store::Store,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    mut change: Change,
) -> Result<(store::Deleted, bool), S3Error> {
    let b = store::require_bucket(tx, bucket)?;
    let d = match version {
        Some(v) => store::delete_version(tx, bucket, key, v)?,
        None => store::delete_current(tx, bucket, key)?,
    };
    let mut queued = false;
    if d.changed {
        if d.delete_marker && version.is_none() {
            change.name = "DeleteMarkerCreated";
        }
        change.version_id = d.version_id.clone();
        queued = notify::enqueue(tx, &b, change)?;
    }
    for blob in &d.release {
        st.release(tx, blob)?;
    }
    Ok((d, queued))
}

#[derive(Deserialize)]
struct DeleteRequest {
    #[serde(rename = "Object", default)]
    objects: Vec<DeleteEntry>,
    #[serde(rename = "Quiet", default)]
    quiet: Option<bool>,
}

#[derive(Deserialize)]
struct DeleteEntry {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "VersionId", default)]
    version_id: Option<String>,
}

pub async fn delete_objects(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let req: DeleteRequest = nimbus_protocol::decode_xml(&body).map_err(S3Error::from)?;
    if req.objects.len() > 1000 || req.objects.is_empty() {
        return Err(S3Error::from(nimbus_protocol::malformed_xml()));
    }
    let quiet = req.quiet.unwrap_or(false);
    let bucket = r.bucket.clone();
    let changes: Vec<(String, Option<String>, Change)> = req
        .objects
        .into_iter()
        .map(|o| {
            let c = Change::removed(&r, &o.key);
            (o.key, o.version_id, c)
        })
        .collect();
    let (deleted, queued) = state
        .store
        .tx(move |tx, st| {
            let mut any = false;
            let mut out = Vec::new();
            for (key, version, change) in changes {
                let (d, queued) = delete_one(tx, st, &bucket, &key, version.as_deref(), change)?;
                any |= queued;
                out.push((key, version, d.delete_marker, d.version_id));
            }
            Ok((out, any))
        })
        .await?;
    if queued {
        state.notify.wake();
    }
    let doc = nimbus_protocol::xml_document("DeleteResult", Some(S3_NAMESPACE), |w| {
        if !quiet {
            for (key, version, marker, marker_version) in &deleted {
                w.nested("Deleted", |w| {
                    w.element("Key", key);
                    w.element_opt("VersionId", version.as_deref());
                    if *marker {
                        w.element("DeleteMarker", "true");
                        if version.is_none() {
                            w.element_opt("DeleteMarkerVersionId", marker_version.as_deref());
                        }
                    }
                });
            }
        }
    });
    r.xml(doc)
}

/// The `versionId` of `x-amz-copy-source`, if it names one.
pub fn copy_source_version(r: &S3Request) -> Option<String> {
    let raw = r.header("x-amz-copy-source")?;
    let (_, q) = raw.split_once('?')?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "versionId")
        .map(|(_, v)| v.into_owned())
}

/// `x-amz-copy-source`: `[/]bucket/key[?versionId=…]`, URL-encoded.
pub fn copy_source(r: &S3Request) -> Result<(String, String), S3Error> {
    let raw = r.header("x-amz-copy-source").unwrap_or("");
    let raw = raw.split_once('?').map(|(a, _)| a).unwrap_or(raw);
    let decoded = wire::percent_decode(raw)?;
    let s = decoded.strip_prefix('/').unwrap_or(&decoded);
    match s.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(S3Error::invalid_argument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
        .field("ArgumentName", "x-amz-copy-source")
        .field("ArgumentValue", raw)),
    }
}

pub async fn copy_object(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let (src_bucket, src_key) = copy_source(&r)?;
    let src_version = copy_source_version(&r);
    let replace = match r.header("x-amz-metadata-directive") {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(S3Error::invalid_argument(format!(
                "Unknown metadata directive: {other}"
            )))
        }
    };
    let replace_tags = r.header("x-amz-tagging-directive") == Some("REPLACE");
    let new_meta = meta_from_headers(r.headers())?;
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let headers = r.headers().clone();
    let now = store::now_ms();
    let change_seed = Change::created(
        "Copy",
        &r,
        &Object {
            key: key.clone(),
            blob: String::new(),
            size: 0,
            etag: String::new(),
            modified_ms: now,
            meta: ObjectMeta::default(),
            version_id: None,
        },
    );
    let (obj, queued) = state
        .store
        .tx(move |tx, st| {
            store::require_bucket(tx, &src_bucket)?;
            let src = find_version(tx, &src_bucket, &src_key, src_version.as_deref(), false)?;
            let b = store::require_bucket(tx, &bucket)?;
            check_read_conditions(&headers, &src, "x-amz-copy-source-")?;
            if src_bucket == bucket
                && src_key == key
                && !replace
                && headers.get("x-amz-storage-class").is_none()
            {
                return Err(S3Error::invalid_request(
                    "This copy request is illegal because it is trying to copy an object to itself \
                     without changing the object's metadata, storage class, website redirect \
                     location or encryption attributes.",
                ));
            }
            let mut meta = if replace {
                new_meta.clone()
            } else {
                src.meta.clone()
            };
            meta.checksum = src.meta.checksum.clone();
            meta.parts = src.meta.parts;
            meta.tags = if replace_tags {
                new_meta.tags.clone()
            } else {
                src.meta.tags.clone()
            };
            let mut obj = Object {
                key: key.clone(),
                blob: src.blob.clone(),
                size: src.size,
                etag: src.etag.clone(),
                modified_ms: now,
                meta,
                version_id: None,
            };
            let release = store::put_object_row(tx, &bucket, &mut obj)?;
            let queued = notify::enqueue(tx, &b, change_seed.with_object(&obj))?;
            for old in release {
                st.release(tx, &old)?;
            }
            Ok((obj, queued))
        })
        .await?;
    if queued {
        state.notify.wake();
    }
    let doc = nimbus_protocol::xml_document("CopyObjectResult", Some(S3_NAMESPACE), |w| {
        w.element("LastModified", &wire::iso8601_ms(obj.modified_ms));
        w.element("ETag", &quoted(&obj.etag));
        if let Some((alg, v)) = &obj.meta.checksum {
            w.element(&format!("Checksum{alg}"), v);
        }
    });
    let mut b = r
        .ok(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/xml");
    if let Some(v) = &obj.version_id {
        b = b.header("x-amz-version-id", v.as_str());
    }
    b.body(Body::from(doc)).map_err(internal)
}

#[derive(Deserialize)]
struct Tagging {
    #[serde(rename = "TagSet")]
    tag_set: TagSet,
}

#[derive(Deserialize)]
struct TagSet {
    #[serde(rename = "Tag", default)]
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

pub async fn get_object_tagging(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let obj = state
        .store
        .read(move |c| {
            store::require_bucket(c, &bucket)?;
            store::get_object(c, &bucket, &key)?.ok_or_else(|| S3Error::no_such_key(&key))
        })
        .await?;
    let doc = nimbus_protocol::xml_document("Tagging", Some(S3_NAMESPACE), |w| {
        w.nested("TagSet", |w| write_tags(w, &obj.meta.tags));
    });
    r.xml(doc)
}

pub fn write_tags(w: &mut XmlWriter, tags: &BTreeMap<String, String>) {
    for (k, v) in tags {
        w.nested("Tag", |w| {
            w.element("Key", k);
            w.element("Value", v);
        });
    }
}

async fn set_tags(
    state: &Arc<State>,
    bucket: String,
    key: String,
    change: Change,
    tags: BTreeMap<String, String>,
) -> Result<(), S3Error> {
    let queued = state
        .store
        .tx(move |tx, _| {
            let b = store::require_bucket(tx, &bucket)?;
            let mut obj =
                store::get_object(tx, &bucket, &key)?.ok_or_else(|| S3Error::no_such_key(&key))?;
            obj.meta.tags = tags;
            tx.execute(
                "UPDATE objects SET meta = ?3 WHERE bucket = ?1 AND key = ?2",
                rusqlite::params![
                    bucket,
                    key,
                    serde_json::to_string(&obj.meta).map_err(internal)?
                ],
            )
            .map_err(internal)?;
            notify::enqueue(tx, &b, change.with_object(&obj))
        })
        .await?;
    if queued {
        state.notify.wake();
    }
    Ok(())
}

pub async fn put_object_tagging(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let t: Tagging = nimbus_protocol::decode_xml(&body).map_err(S3Error::from)?;
    let mut tags = BTreeMap::new();
    for tag in t.tag_set.tags {
        if tags.insert(tag.key, tag.value).is_some() {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidTag",
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    validate_tags(&tags)?;
    let change = Change::tagging("Put", &r, &r.key);
    set_tags(state, r.bucket.clone(), r.key.clone(), change, tags).await?;
    r.empty(StatusCode::OK)
}

pub async fn delete_object_tagging(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let change = Change::tagging("Delete", &r, &r.key);
    set_tags(
        state,
        r.bucket.clone(),
        r.key.clone(),
        change,
        BTreeMap::new(),
    )
    .await?;
    r.empty(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-1000", 100).unwrap(), Some((0, 99)));
        assert_eq!(parse_range("bytes=50-1000", 100).unwrap(), Some((50, 99)));
        assert_eq!(parse_range("bytes=9-3", 100).unwrap(), None);
        assert_eq!(parse_range("items=0-3", 100).unwrap(), None);
        let e = parse_range("bytes=100-", 100).unwrap_err();
        assert_eq!(e.0.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert!(parse_range("bytes=-0", 100).is_err());
    }

    #[test]
    fn etag_lists() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("\"x\", \"abc\"", "abc"));
        assert!(etag_matches("*", "abc"));
        assert!(!etag_matches("\"abd\"", "abc"));
    }

    #[test]
    fn http_dates() {
        let t = wire::parse_http_date("Sat, 05 Dec 2026 12:03:46 GMT").unwrap();
        assert_eq!(t.unix_timestamp(), 1796472226);
    }
}
