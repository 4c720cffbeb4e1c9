//! How an S3 request names its bucket: in the path (`/bucket/key`, path style) or
//! in the host (`bucket.s3.localhost/key`, virtual-host style). The operation
//! table's bindings are path style, so a virtual-host request is rewritten to the
//! path it stands for before it is decoded.

use axum::extract::Request;
use http::uri::PathAndQuery;
use http::Uri;

/// The host suffixes under which a leading label is a bucket name. `localhost`
/// names resolve to loopback on every modern resolver, so
/// `bucket.localhost:4566` works with no DNS set-up; the AWS names cover clients
/// that build S3's own host names and reach Nimbus through a resolver override.
const SUFFIXES: &[&str] = &[".s3.localhost", ".localhost", ".s3.amazonaws.com"];

/// The bucket a `Host` names, virtual-host style: `bucket.localhost`,
/// `bucket.s3.localhost`, `bucket.s3.amazonaws.com`, `bucket.s3.<region>.amazonaws.com`,
/// `bucket.s3-<region>.amazonaws.com`. `None` for any other host (path style).
pub fn virtual_host_bucket(host: &str) -> Option<&str> {
    // Drop the port (an IPv6 literal ends in `]`, never a bucket).
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    if let Some(bucket) = SUFFIXES.iter().find_map(|s| host.strip_suffix(s)) {
        return valid(bucket);
    }
    // bucket.s3.<region>.amazonaws.com / bucket.s3-<region>.amazonaws.com
    let rest = host.strip_suffix(".amazonaws.com")?;
    let (front, region) = rest.rsplit_once('.')?;
    if let Some(bucket) = front.strip_suffix(".s3") {
        return valid(bucket);
    }
    if region.starts_with("s3-") {
        return valid(front);
    }
    None
}

/// A bucket label worth treating as one (S3's naming rules decide the rest when
/// the bucket is used).
fn valid(bucket: &str) -> Option<&str> {
    (!bucket.is_empty() && bucket != "s3" && !bucket.starts_with('.')).then_some(bucket)
}

/// Rewrite a virtual-host-style request to path style (`/bucket/key?query`); a
/// path-style request is left alone.
pub fn to_path_style(req: &mut Request) {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let Some(bucket) = host.and_then(virtual_host_bucket) else {
        return;
    };
    let pq = match req.uri().query() {
        Some(q) => format!("/{bucket}{}?{q}", req.uri().path()),
        None => format!("/{bucket}{}", req.uri().path()),
    };
    let Ok(pq) = PathAndQuery::try_from(pq) else {
        return;
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_in_host_names() {
        assert_eq!(virtual_host_bucket("photos.localhost"), Some("photos"));
        assert_eq!(virtual_host_bucket("photos.localhost:4566"), Some("photos"));
        assert_eq!(
            virtual_host_bucket("photos.s3.localhost:4566"),
            Some("photos")
        );
        assert_eq!(
            virtual_host_bucket("my.photos.s3.localhost"),
            Some("my.photos")
        );
        assert_eq!(
            virtual_host_bucket("photos.s3.amazonaws.com"),
            Some("photos")
        );
        assert_eq!(
            virtual_host_bucket("photos.s3.eu-west-1.amazonaws.com"),
            Some("photos")
        );
        assert_eq!(
            virtual_host_bucket("photos.s3-eu-west-1.amazonaws.com"),
            Some("photos")
        );
        for path_style in [
            "localhost",
            "localhost:4566",
            "s3.localhost",
            "127.0.0.1:4566",
            "[::1]:4566",
            "s3.amazonaws.com",
            "s3.us-east-1.amazonaws.com",
            "sqs.us-east-1.amazonaws.com",
            "nimbus.example.com",
        ] {
            assert_eq!(virtual_host_bucket(path_style), None, "{path_style}");
        }
    }

    #[test]
    fn rewrites_keep_path_and_query() {
        let mut req = Request::builder()
            .uri("/a/b.txt?tagging")
            .header("host", "photos.s3.localhost:4566")
            .body(axum::body::Body::empty())
            .unwrap();
        to_path_style(&mut req);
        assert_eq!(req.uri().path(), "/photos/a/b.txt");
        assert_eq!(req.uri().query(), Some("tagging"));
    }
}
