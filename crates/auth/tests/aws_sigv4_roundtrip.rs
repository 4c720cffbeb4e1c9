//! Round trips against a signer nobody here wrote: requests signed by the
//! `aws-sigv4` crate (the AWS SDK for Rust's signer), in the header and as
//! presigned URLs, for several services and awkward paths, queries and bodies,
//! must verify; any change to what was signed, a wrong secret, an unknown key, a
//! stale or future time or a mismatched scope date must not. And our own
//! [`Signer`] must produce byte-identical `Authorization` headers to it.

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use nimbus_auth::{AuthError, Credentials, Payload, Request, Signer, Verified, Verifier};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const HOST: &str = "127.0.0.1:4566";

/// A fixed signing time, so failures are reproducible.
fn signed_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_718_000_000) // 2024-06-10T06:13:20Z
}

fn at(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn verifier() -> Verifier {
    Verifier::new([
        Credentials::new("someone-else", "another secret"),
        Credentials::new(AKID, SECRET),
    ])
}

/// One request as a client would send it.
#[derive(Clone)]
struct Case {
    service: &'static str,
    method: &'static str,
    /// Path and query as sent on the wire (already percent-encoded).
    target: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

/// What arrived at the server.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn request(&self) -> Request<'_> {
        Request::new(&self.method, &self.uri, &self.headers, Some(&self.body))
    }

    fn verify_at(&self, v: &Verifier, now: OffsetDateTime) -> Result<Verified, AuthError> {
        v.verify_at(&self.request(), now)
    }

    fn with_target(&self, target: &str) -> Self {
        Self {
            uri: target.parse().unwrap(),
            ..self.clone()
        }
    }
}

fn cases() -> Vec<Case> {
    let json = |s: &str| s.as_bytes().to_vec();
    vec![
        Case {
            service: "lambda",
            method: "GET",
            target: "/2015-03-31/functions/",
            headers: vec![],
            body: vec![],
        },
        Case {
            service: "lambda",
            method: "GET",
            // A raw `+`: form encoding (a space) to this signer, a plus to botocore.
            target: "/2015-03-31/functions/?Marker=a+b&MaxItems=10",
            headers: vec![],
            body: vec![],
        },
        Case {
            service: "lambda",
            method: "POST",
            // boto3 sends a function ARN in the path percent-encoded.
            target: "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations?Qualifier=%24LATEST",
            headers: vec![
                ("content-type", "application/json"),
                ("x-amz-invocation-type", "RequestResponse"),
                ("x-amz-log-type", "Tail"),
            ],
            body: json(r#"{"key": "välue", "n": [1, 2, 3]}"#),
        },
        Case {
            service: "sts",
            method: "POST",
            target: "/",
            headers: vec![("content-type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: json("Action=GetCallerIdentity&Version=2011-06-15"),
        },
        Case {
            service: "sqs",
            method: "GET",
            target: "/?Action=ListQueues&QueueNamePrefix=a%20b%2Fc%2A~&Version=2012-11-05&empty=&flag",
            headers: vec![("x-amz-meta-odd", "  several   spaces\tinside  ")],
            body: vec![],
        },
        Case {
            service: "execute-api",
            method: "PUT",
            target: "/stage/a/b/../c/./d//e/caf%C3%A9/%E2%9C%93?b=2&a=1&a=0&%E1%88%B4=x",
            headers: vec![("content-type", "application/octet-stream")],
            body: (0u8..=255).cycle().take(70_000).collect(),
        },
        Case {
            service: "dynamodb",
            method: "POST",
            target: "/",
            headers: vec![
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "DynamoDB_20120810.ListTables"),
            ],
            body: json("{}"),
        },
        Case {
            service: "nimbus",
            method: "DELETE",
            target: "/_nimbus/functions/my%20fn%2Bv2?force=true&note=x%3Dy%26z",
            headers: vec![],
            body: vec![],
        },
    ]
}

/// An S3 request: path used as sent, signed with `x-amz-content-sha256`.
fn s3_case() -> Case {
    Case {
        service: "s3",
        method: "PUT",
        target: "/bucket/my%20key/a..b//c%3Ad.txt?x-id=PutObject",
        headers: vec![("content-type", "text/plain")],
        body: b"hello s3".to_vec(),
    }
}

fn settings(case: &Case, location: SignatureLocation) -> SigningSettings {
    let mut s = SigningSettings::default();
    s.signature_location = location;
    if location == SignatureLocation::QueryParams {
        s.expires_in = Some(Duration::from_secs(300));
    }
    if case.service == "s3" {
        s.percent_encoding_mode = PercentEncodingMode::Single;
        s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    s
}

/// Sign `case` with `aws-sigv4` and return it as the server would receive it.
fn sign_with_aws(
    case: &Case,
    location: SignatureLocation,
    secret: &str,
    time: SystemTime,
    body: SignableBody<'_>,
) -> Received {
    let mut req = http::Request::builder()
        .method(case.method)
        .uri(case.target)
        .header("host", HOST);
    for (k, v) in &case.headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(()).unwrap();
    let mut signing_settings = settings(case, location);
    if body == SignableBody::UnsignedPayload {
        // As the SDKs do: an unsigned payload is declared on the wire.
        signing_settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let identity = aws_credential_types::Credentials::new(AKID, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name(case.service)
        .time(time)
        .settings(signing_settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    let signable =
        SignableRequest::new(case.method, case.target, headers.into_iter(), body).unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    let (parts, ()) = req.into_parts();
    Received {
        method: parts.method.to_string(),
        uri: parts.uri,
        headers: parts.headers,
        body: case.body.clone(),
    }
}

fn signed(case: &Case, location: SignatureLocation) -> Received {
    sign_with_aws(
        case,
        location,
        SECRET,
        signed_at(),
        SignableBody::Bytes(&case.body),
    )
}

fn all_cases() -> Vec<Case> {
    let mut all = cases();
    all.push(s3_case());
    all
}

const LOCATIONS: [SignatureLocation; 2] =
    [SignatureLocation::Headers, SignatureLocation::QueryParams];

#[test]
fn requests_signed_by_aws_sigv4_verify() {
    let v = verifier();
    for case in all_cases() {
        for location in LOCATIONS {
            let r = signed(&case, location);
            let what = format!("{} {} {:?}", case.service, case.target, location);
            let got = r
                .verify_at(&v, at(signed_at()))
                .unwrap_or_else(|e| panic!("{what}: {e:?}\n{r:?}"));
            assert_eq!(got.scope.access_key_id, AKID, "{what}");
            assert_eq!(got.scope.service, case.service, "{what}");
            assert_eq!(got.scope.region, "eu-west-1", "{what}");
            assert_eq!(got.scope.date, "20240610", "{what}");
            assert_eq!(got.presigned, location == SignatureLocation::QueryParams);
            assert!(
                matches!(got.payload, Payload::Sha256 { checked: true, .. }),
                "{what}: {:?}",
                got.payload
            );
            // Still valid 14 minutes later (header) or until expiry (presigned).
            let later = signed_at() + Duration::from_secs(299);
            assert!(r.verify_at(&v, at(later)).is_ok(), "{what}");
        }
    }
}

#[test]
fn unsigned_payload_verifies_without_the_body() {
    let v = verifier();
    for case in [cases()[2].clone(), s3_case()] {
        let r = sign_with_aws(
            &case,
            SignatureLocation::Headers,
            SECRET,
            signed_at(),
            SignableBody::UnsignedPayload,
        );
        assert_eq!(r.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        let req = Request::new(&r.method, &r.uri, &r.headers, None);
        let got = v.verify_at(&req, at(signed_at())).unwrap();
        assert_eq!(got.payload, Payload::Unsigned, "{}", case.service);
    }
}

#[test]
fn the_body_is_asked_for_only_when_the_signature_needs_it() {
    let v = verifier();
    let now = at(signed_at());
    // Lambda signs the body's hash without declaring it: we must read the body.
    let r = signed(&cases()[2], SignatureLocation::Headers);
    let without = Request::new(&r.method, &r.uri, &r.headers, None);
    assert_eq!(
        v.verify_at(&without, now).unwrap_err(),
        AuthError::BodyNotProvided
    );
    // An unknown key or a stale request is refused before anything is read.
    let stale = now + time::Duration::minutes(16);
    assert!(matches!(
        v.verify_at(&without, stale).unwrap_err(),
        AuthError::SignatureExpired { .. }
    ));
    assert!(matches!(
        Verifier::new([]).verify_at(&without, now).unwrap_err(),
        AuthError::UnrecognizedClient { .. }
    ));

    // S3 declares the hash: the signature checks without the body, the hash
    // is then the body reader's to compare...
    let r = signed(&s3_case(), SignatureLocation::Headers);
    let without = Request::new(&r.method, &r.uri, &r.headers, None);
    let got = v.verify_at(&without, now).unwrap();
    assert!(matches!(
        got.payload,
        Payload::Sha256 { checked: false, .. }
    ));
    // ...or ours when the body is given.
    let got = r.verify_at(&v, now).unwrap();
    assert!(matches!(got.payload, Payload::Sha256 { checked: true, .. }));
}

fn assert_mismatch(result: Result<Verified, AuthError>, what: &str) {
    match result {
        Err(AuthError::SignatureMismatch(_)) | Err(AuthError::ContentSha256Mismatch { .. }) => {}
        other => panic!("{what}: expected a signature mismatch, got {other:?}"),
    }
}

#[test]
fn tampering_with_anything_signed_fails() {
    let v = verifier();
    let now = at(signed_at());
    for case in all_cases() {
        for location in LOCATIONS {
            let r = signed(&case, location);
            let what = |part: &str| format!("{} {:?}: {part}", case.service, location);

            let mut t = r.clone();
            t.method = if t.method == "GET" { "HEAD" } else { "GET" }.into();
            assert_mismatch(t.verify_at(&v, now), &what("method"));

            let path = r.uri.path();
            let t = r.with_target(&format!(
                "{}x{}",
                path,
                r.uri.query().map(|q| format!("?{q}")).unwrap_or_default()
            ));
            assert_mismatch(t.verify_at(&v, now), &what("path"));

            let q = r.uri.query().unwrap_or("");
            let sep = if q.is_empty() { "" } else { "&" };
            let t = r.with_target(&format!("{path}?{q}{sep}injected=1"));
            assert_mismatch(t.verify_at(&v, now), &what("added query parameter"));

            let mut t = r.clone();
            t.headers
                .insert("host", "evil.example:4566".parse().unwrap());
            assert_mismatch(t.verify_at(&v, now), &what("host"));

            if let Some((k, _)) = case.headers.first() {
                let mut t = r.clone();
                t.headers.insert(*k, "changed".parse().unwrap());
                assert_mismatch(t.verify_at(&v, now), &what(k));
            }

            let mut t = r.clone();
            t.body.push(b' ');
            assert_mismatch(t.verify_at(&v, now), &what("body"));

            // The signature itself, one hex digit flipped.
            let flip = |s: &str| {
                let i = s.rfind("Signature=").unwrap() + "Signature=".len() + 5;
                let mut b = s.as_bytes().to_vec();
                b[i] = if b[i] == b'0' { b'1' } else { b'0' };
                String::from_utf8(b).unwrap()
            };
            let t = match location {
                SignatureLocation::Headers => {
                    let mut t = r.clone();
                    let a = flip(t.headers["authorization"].to_str().unwrap());
                    t.headers.insert("authorization", a.parse().unwrap());
                    t
                }
                _ => r.with_target(&flip(&r.uri.to_string())),
            };
            assert_mismatch(t.verify_at(&v, now), &what("signature"));
        }
    }
}

#[test]
fn wrong_secret_and_unknown_key_fail() {
    let now = at(signed_at());
    for case in all_cases() {
        for location in LOCATIONS {
            let r = sign_with_aws(
                &case,
                location,
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz",
                signed_at(),
                SignableBody::Bytes(&case.body),
            );
            let err = r.verify_at(&verifier(), now).unwrap_err();
            assert!(matches!(err, AuthError::SignatureMismatch(_)), "{err:?}");
            assert_eq!(err.code(), "InvalidSignatureException");
            assert_eq!(err.status(), http::StatusCode::FORBIDDEN);

            let only_others = Verifier::new([Credentials::new("someone-else", SECRET)]);
            let err = signed(&case, location)
                .verify_at(&only_others, now)
                .unwrap_err();
            assert_eq!(
                err,
                AuthError::UnrecognizedClient {
                    access_key_id: AKID.into()
                }
            );
            assert_eq!(err.code(), "UnrecognizedClientException");
            assert_eq!(
                err.code_for(nimbus_auth::Protocol::Query),
                "InvalidClientTokenId"
            );
        }
    }
}

#[test]
fn time_is_checked_like_aws() {
    let v = verifier();
    let t0 = at(signed_at());
    let minutes = time::Duration::minutes;
    let seconds = time::Duration::seconds;
    for case in all_cases() {
        // Header auth: 15 minutes of skew either way, not a second more.
        let r = signed(&case, SignatureLocation::Headers);
        assert!(r.verify_at(&v, t0 + minutes(15)).is_ok());
        assert!(r.verify_at(&v, t0 - minutes(15)).is_ok());
        let err = r.verify_at(&v, t0 + minutes(15) + seconds(1)).unwrap_err();
        assert!(matches!(err, AuthError::SignatureExpired { .. }), "{err:?}");
        assert_eq!(err.code(), "InvalidSignatureException");
        let err = r.verify_at(&v, t0 - minutes(15) - seconds(1)).unwrap_err();
        assert!(
            matches!(err, AuthError::SignatureNotYetCurrent { .. }),
            "{err:?}"
        );

        // Presigned: until X-Amz-Date + X-Amz-Expires (300 s), not a second more;
        // a URL from the future is refused like a header.
        let r = signed(&case, SignatureLocation::QueryParams);
        assert!(r.verify_at(&v, t0 + seconds(300)).is_ok());
        let err = r.verify_at(&v, t0 + seconds(301)).unwrap_err();
        assert!(
            matches!(err, AuthError::RequestExpired { expires_s: 300, .. }),
            "{err:?}"
        );
        let err = r.verify_at(&v, t0 - minutes(16)).unwrap_err();
        assert!(
            matches!(err, AuthError::SignatureNotYetCurrent { .. }),
            "{err:?}"
        );
    }
}

#[test]
fn scope_date_must_be_the_request_day() {
    let v = verifier();
    let case = &cases()[2];
    let mut r = signed(case, SignatureLocation::Headers);
    let auth = r.headers["authorization"]
        .to_str()
        .unwrap()
        .replace("/20240610/", "/20240609/");
    r.headers.insert("authorization", auth.parse().unwrap());
    let err = r.verify_at(&v, at(signed_at())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '20240609' != '20240610', from '20240610T061320Z'."
    );
    assert_eq!(err.code(), "InvalidSignatureException");

    let r = signed(case, SignatureLocation::QueryParams);
    let t = r.with_target(
        &r.uri
            .to_string()
            .replace("%2F20240610%2F", "%2F20240611%2F"),
    );
    assert!(matches!(
        t.verify_at(&v, at(signed_at())).unwrap_err(),
        AuthError::CredentialDateMismatch { .. }
    ));
}

#[test]
fn unsigned_requests_and_unsigned_host_are_refused() {
    let v = verifier();
    let r = signed(&cases()[0], SignatureLocation::Headers);
    let mut t = r.clone();
    t.headers.remove("authorization");
    let err = t.verify_at(&v, at(signed_at())).unwrap_err();
    assert_eq!(err, AuthError::MissingAuthenticationToken);
    assert_eq!(err.code(), "MissingAuthenticationTokenException");
    assert_eq!(err.status(), http::StatusCode::FORBIDDEN);

    // A signature that leaves `host` out could be replayed against another host.
    let mut t = r.clone();
    let auth = t.headers["authorization"]
        .to_str()
        .unwrap()
        .replace("SignedHeaders=host;", "SignedHeaders=");
    t.headers.insert("authorization", auth.parse().unwrap());
    let err = t.verify_at(&v, at(signed_at())).unwrap_err();
    assert!(
        matches!(err, AuthError::IncompleteSignature { .. }),
        "{err:?}"
    );
}

/// Our signer against theirs: same request, same time, same `Authorization`.
/// (Not for S3, whose requests must declare `x-amz-content-sha256`; our signer
/// is for Nimbus's own clients.)
#[test]
fn our_signer_matches_aws_sigv4_byte_for_byte() {
    for case in cases() {
        for unsigned_body in [false, true] {
            let theirs = {
                let body = if unsigned_body {
                    SignableBody::UnsignedPayload
                } else {
                    SignableBody::Bytes(&case.body)
                };
                let mut req = http::Request::builder()
                    .method(case.method)
                    .uri(case.target)
                    .header("host", HOST);
                for (k, v) in &case.headers {
                    req = req.header(*k, *v);
                }
                let mut req = req.body(()).unwrap();
                let identity =
                    aws_credential_types::Credentials::new(AKID, SECRET, None, None, "t").into();
                let mut s = settings(&case, SignatureLocation::Headers);
                if unsigned_body {
                    // UNSIGNED-PAYLOAD must be declared on the wire.
                    s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                }
                let params = v4::SigningParams::builder()
                    .identity(&identity)
                    .region("eu-west-1")
                    .name(case.service)
                    .time(signed_at())
                    .settings(s)
                    .build()
                    .unwrap()
                    .into();
                let headers: Vec<(&str, &str)> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
                    .collect();
                let signable =
                    SignableRequest::new(case.method, case.target, headers.into_iter(), body)
                        .unwrap();
                let (instructions, _) = sign(signable, &params).unwrap().into_parts();
                instructions.apply_to_request_http1x(&mut req);
                req.headers()["authorization"].to_str().unwrap().to_owned()
            };

            // Ours, given an absolute URI and no host header, as a client has it.
            let mut headers = http::HeaderMap::new();
            for (k, v) in &case.headers {
                headers.insert(*k, v.parse().unwrap());
            }
            let uri: http::Uri = format!("http://{HOST}{}", case.target).parse().unwrap();
            let signer = Signer::new(Credentials::new(AKID, SECRET), "eu-west-1", case.service);
            assert_eq!(signer.access_key_id(), AKID);
            let our_body = (!unsigned_body).then_some(case.body.as_slice());
            signer.sign_at(case.method, &uri, &mut headers, our_body, at(signed_at()));
            let what = format!("{} {} unsigned={unsigned_body}", case.service, case.target);
            assert_eq!(headers["authorization"].to_str().unwrap(), theirs, "{what}");
            assert_eq!(headers["host"], HOST);

            // And the verifier accepts it as received (origin-form target).
            let received: http::Uri = uri.path_and_query().unwrap().as_str().parse().unwrap();
            let req = Request::new(case.method, &received, &headers, our_body);
            let got = verifier().verify_at(&req, at(signed_at())).unwrap();
            assert_eq!(got.scope.service, case.service, "{what}");
            let want = if unsigned_body {
                Payload::Unsigned
            } else {
                Payload::Sha256 {
                    hex: sha256_hex(&case.body),
                    checked: true,
                }
            };
            assert_eq!(got.payload, want, "{what}");

            // Signing again replaces the old signature rather than adding one.
            signer.sign_at(case.method, &uri, &mut headers, our_body, at(signed_at()));
            assert_eq!(headers.get_all("authorization").iter().count(), 1);
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// S3 browser POST policies: the signature is the HMAC of the base64 policy
/// under the derived key, as `aws-sigv4` computes it.
#[test]
fn post_policy_signatures() {
    let policy = "eyJleHBpcmF0aW9uIjogIjIwOTktMDEtMDFUMDA6MDA6MDBaIiwgImNvbmRpdGlvbnMiOiBbXX0=";
    let key = v4::generate_signing_key(SECRET, signed_at(), "us-east-1", "s3");
    let signature = v4::calculate_signature(key, policy.as_bytes());
    let credential = format!("{AKID}/20240610/us-east-1/s3/aws4_request");
    let (scope, principal) = verifier()
        .verify_post_policy(&credential, policy, &signature, None)
        .unwrap();
    assert_eq!(scope.region, "us-east-1");
    assert_eq!(principal, nimbus_auth::Principal::Root);
    // Another policy, another day, another key: refused.
    let tampered = policy.replace("eyJ", "eyK");
    assert!(matches!(
        verifier().verify_post_policy(&credential, &tampered, &signature, None),
        Err(AuthError::SignatureMismatch(_))
    ));
    let other_day = format!("{AKID}/20240611/us-east-1/s3/aws4_request");
    assert!(matches!(
        verifier().verify_post_policy(&other_day, policy, &signature, None),
        Err(AuthError::SignatureMismatch(_))
    ));
    assert!(matches!(
        verifier().verify_post_policy(
            "AKIDNOPE/20240610/us-east-1/s3/aws4_request",
            policy,
            &signature,
            None
        ),
        Err(AuthError::UnrecognizedClient { .. })
    ));
    assert!(verifier()
        .verify_post_policy("garbage", policy, &signature, None)
        .is_err());
}
