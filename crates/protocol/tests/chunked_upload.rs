//! The path an aws-chunked upload takes through the edge: the verifier checks
//! the seed signature from the headers alone, hands out the chunk-signature
//! chain, and the body is decoded as it streams — here with the S3 API
//! reference's worked example (66560 bytes of `a`, chunks of 65536 and 1024).

use axum::body::Body;
use bytes::Bytes;
use nimbus_auth::{Credentials, Request, Verifier};
use nimbus_protocol::{decode_aws_chunked_request, read_body, BodyLimit};

const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const SIGS: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

fn documented_request(flip_at: Option<usize>) -> axum::extract::Request {
    let mut body = Vec::new();
    for (size, sig) in [(65536usize, SIGS[0]), (1024, SIGS[1]), (0, SIGS[2])] {
        body.extend_from_slice(format!("{size:x};chunk-signature={sig}\r\n").as_bytes());
        body.extend(vec![b'a'; size]);
        body.extend_from_slice(b"\r\n");
    }
    if let Some(i) = flip_at {
        body[i] ^= 0x20;
    }
    // Delivered in uneven pieces, as a socket would.
    let pieces: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut req =
        axum::extract::Request::new(Body::from_stream(futures_util::stream::iter(pieces)));
    *req.method_mut() = http::Method::PUT;
    *req.uri_mut() = "/examplebucket/chunkObject.txt".parse().unwrap();
    for (k, v) in [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
             x-amz-decoded-content-length;x-amz-storage-class,Signature=\
             4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
    ] {
        req.headers_mut()
            .insert(k, http::HeaderValue::from_static(v));
    }
    req
}

async fn upload(flip_at: Option<usize>) -> Result<Bytes, nimbus_protocol::AwsError> {
    let verifier = Verifier::new([Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )]);
    let req = documented_request(flip_at);
    let verified = verifier
        .verify_at(
            &Request::new("PUT", req.uri(), req.headers(), None),
            time::macros::datetime!(2013-05-24 00:00:30 UTC),
        )
        .expect("the seed signature verifies without the body");
    let signer = verifier.chunk_signer(&verified).expect("a signed stream");
    assert_eq!(signer.previous_signature(), SEED);
    let req = decode_aws_chunked_request(req, Some(signer))?;
    assert_eq!(req.headers()["content-length"], "66560");
    assert!(req.headers().get("content-encoding").is_none());
    let headers = req.headers().clone();
    read_body(req.into_body(), &headers, BodyLimit::bytes(1 << 20)).await
}

#[tokio::test]
async fn the_documented_upload_verifies_end_to_end() {
    let body = upload(None).await.unwrap();
    assert_eq!(body.len(), 66560);
    assert!(body.iter().all(|&b| b == b'a'));
}

#[tokio::test]
async fn a_tampered_upload_is_refused_with_signature_does_not_match() {
    for at in [200, 66000] {
        let e = upload(Some(at)).await.unwrap_err();
        assert_eq!(e.status, 403, "flipped at {at}");
        assert_eq!(e.code, "SignatureDoesNotMatch");
    }
}
