//! AWS's published SigV4 test vectors (`tests/data/aws-signing-test-suite`), driven
//! through the verifier: every signed request must verify, our canonical request
//! must be one of the candidates and equal AWS's byte for byte, and tampering with
//! any part must fail.

use crate::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use std::path::{Path, PathBuf};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// What a request line may not carry raw: the vectors write `/example space/`
/// and `/ሴ` where an HTTP client sends `%20` and `%E1%88%B4`.
const NOT_IN_URI: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/aws-signing-test-suite")
}

/// A request as it would arrive at the server.
struct Parsed {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Parsed {
    fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: Some(&self.body),
        }
    }
}

/// Parse the suite's `*.txt` request format (obs-fold continuation lines allowed).
fn parse_request(text: &str) -> Parsed {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let (method, target) = request_line.split_once(' ').unwrap();
    let target = target.strip_suffix(" HTTP/1.1").unwrap_or(target);
    let target = utf8_percent_encode(target, NOT_IN_URI).to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    Parsed {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

struct Case {
    name: String,
    dir: PathBuf,
    context: serde_json::Value,
}

impl Case {
    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }

    fn now(&self) -> OffsetDateTime {
        let ts = self.context["timestamp"].as_str().unwrap();
        OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap()
    }

    fn verifier(&self, secret: &str) -> Verifier {
        let v = Verifier::new([Credentials::new(AKID, secret)]);
        if self.context["normalize"].as_bool() == Some(false) {
            // The "unnormalized" cases are the S3 rule under the name `service`.
            v.with_s3_path_rule("service")
        } else {
            v
        }
    }
}

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = std::fs::read_dir(suite_dir().join("v4"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|dir| {
            let context = std::fs::read_to_string(dir.join("context.json")).ok()?;
            Some(Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                context: serde_json::from_str(&context).unwrap(),
                dir,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 38,
        "test suite not found under {:?}",
        suite_dir()
    );
    out
}

/// Our canonical-request candidates for a request, without key or time checks.
fn candidates(verifier: &Verifier, req: &Request<'_>) -> Vec<String> {
    let auth = parse::auth_input(req.headers, req.query).unwrap();
    let scope = parse::parse_scope(&auth.credential, auth.presigned).unwrap();
    verifier
        .canonical_requests(req, &auth, &scope)
        .unwrap()
        .into_iter()
        .map(|(b, _)| String::from_utf8(b).unwrap())
        .collect()
}

/// `post-sts-header-after` presigns, then appends `X-Amz-Security-Token` unsigned
/// (AWS IoT's websocket convention); no other service accepts that.
const SKIP_QUERY: &[&str] = &["post-sts-header-after"];

#[test]
fn every_header_signed_vector_verifies() {
    let mut checked = 0;
    for case in cases() {
        let text = case.file("header-signed-request.txt").unwrap();
        let parsed = parse_request(&text);
        let req = parsed.request();
        let verifier = case.verifier(SECRET);
        let v = verifier
            .verify_at(&req, case.now())
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        assert_eq!(v.scope.access_key_id, AKID);
        assert_eq!(v.scope.region, case.context["region"].as_str().unwrap());
        assert_eq!(v.scope.service, case.context["service"].as_str().unwrap());
        assert!(!v.presigned);

        let want = case.file("header-canonical-request.txt").unwrap();
        let ours = candidates(&verifier, &req);
        assert!(
            ours.contains(&want),
            "{}: canonical request\n{want}\nnot among\n{ours:#?}",
            case.name
        );
        let want_sig = case.file("header-signature.txt").unwrap();
        assert!(text.contains(want_sig.trim()), "{}", case.name);
        checked += 1;
    }
    assert!(checked >= 38);
}

#[test]
fn every_presigned_vector_verifies() {
    let mut checked = 0;
    for case in cases() {
        let Some(text) = case.file("query-signed-request.txt") else {
            continue;
        };
        if SKIP_QUERY.contains(&case.name.as_str()) {
            continue;
        }
        let parsed = parse_request(&text);
        let req = parsed.request();
        let verifier = case.verifier(SECRET);
        let v = verifier
            .verify_at(&req, case.now())
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        assert!(v.presigned);
        let want = case.file("query-canonical-request.txt").unwrap();
        assert!(
            candidates(&verifier, &req).contains(&want),
            "{}: canonical request differs",
            case.name
        );
        // Valid for X-Amz-Expires (3600 s), not one second more.
        let end = case.now() + Duration::seconds(3600);
        assert!(verifier.verify_at(&req, end).is_ok(), "{}", case.name);
        let err = verifier
            .verify_at(&req, end + Duration::seconds(1))
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::RequestExpired {
                    expires_s: 3600,
                    ..
                }
            ),
            "{}",
            case.name
        );
        checked += 1;
    }
    assert!(checked >= 36);
}

#[test]
fn every_vector_fails_with_the_wrong_secret() {
    for case in cases() {
        for file in ["header-signed-request.txt", "query-signed-request.txt"] {
            let Some(text) = case.file(file) else {
                continue;
            };
            let parsed = parse_request(&text);
            let err = case
                .verifier("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEx")
                .verify_at(&parsed.request(), case.now())
                .unwrap_err();
            assert!(
                matches!(err, AuthError::SignatureMismatch(_)),
                "{} {file}: {err:?}",
                case.name
            );
            assert_eq!(err.code(), "InvalidSignatureException");
        }
    }
}

#[test]
fn every_vector_fails_when_tampered() {
    for case in cases() {
        let text = case.file("header-signed-request.txt").unwrap();
        let verifier = case.verifier(SECRET);
        let now = case.now();
        let mismatch = |p: &Parsed, what: &str| {
            let err = verifier.verify_at(&p.request(), now).unwrap_err();
            assert!(
                matches!(err, AuthError::SignatureMismatch(_)),
                "{} ({what}): {err:?}",
                case.name
            );
        };

        let mut p = parse_request(&text);
        p.method = if p.method == "GET" { "POST" } else { "GET" }.into();
        mismatch(&p, "method");

        let mut p = parse_request(&text);
        p.path = format!("{}x", p.path);
        mismatch(&p, "path");

        let mut p = parse_request(&text);
        p.query = if p.query.is_empty() {
            "extra=1".into()
        } else {
            format!("{}&extra=1", p.query)
        };
        mismatch(&p, "query");

        let mut p = parse_request(&text);
        p.headers
            .insert("host", HeaderValue::from_static("evil.example.com"));
        mismatch(&p, "host header");

        let mut p = parse_request(&text);
        let date = p.headers.get("x-amz-date").unwrap().to_str().unwrap();
        let later = date
            .replace("T123600Z", "T123601Z")
            .replace("T154045Z", "T154046Z");
        p.headers
            .insert("x-amz-date", HeaderValue::from_str(&later).unwrap());
        mismatch(&p, "date");

        let mut p = parse_request(&text);
        let auth = p.headers.get("authorization").unwrap().to_str().unwrap();
        let last = auth.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &auth[..auth.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        p.headers
            .insert("authorization", HeaderValue::from_str(&flipped).unwrap());
        mismatch(&p, "signature");

        if case.context["sign_body"].as_bool() == Some(true) {
            // The body is covered through x-amz-content-sha256.
            let mut p = parse_request(&text);
            p.body = b"Param1=value2".to_vec();
            let err = verifier.verify_at(&p.request(), now).unwrap_err();
            assert!(matches!(err, AuthError::ContentSha256Mismatch { .. }));
            assert_eq!(err.code_for(Protocol::S3), "XAmzContentSHA256Mismatch");
        }
    }
}

/// The two older-format cases: a Lambda ARN in the path and an API Gateway
/// `@connections` id, both double-encoded because neither service is S3.
#[test]
fn double_encoded_paths() {
    let dir = suite_dir().join("v4/double-url-encode");
    let text = std::fs::read_to_string(dir.join("header-signed-request.txt")).unwrap();
    let parsed = parse_request(&text);
    let verifier = Verifier::new([Credentials::new(AKID, SECRET)]);
    let want = std::fs::read_to_string(dir.join("header-canonical-request.txt")).unwrap();
    let ours = candidates(&verifier, &parsed.request());
    assert_eq!(ours[0], want, "the double encoding is the first candidate");
    let now = parse::parse_amz_date("20210511T154045Z").unwrap();
    let v = verifier.verify_at(&parsed.request(), now).unwrap();
    assert_eq!(
        (v.scope.service.as_str(), v.scope.region.as_str()),
        ("lambda", "us-east-2")
    );

    let dir = suite_dir().join("v4/double-encode-path");
    let want = std::fs::read_to_string(dir.join("header-canonical-request.txt")).unwrap();
    let want_path = want.lines().nth(1).unwrap();
    assert_eq!(
        canonical::path_candidates(
            "/test/@connections/JBDvjfGEIAMCERw%3D",
            PathRule::Normalized
        )[0],
        want_path
    );
}

/// The IAM `ListUsers` example of the AWS General Reference, as a whole request.
#[test]
fn iam_list_users_example_request() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    headers.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
    headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    headers.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        ),
    );
    let req = Request {
        method: "GET",
        path: "/",
        query: "Action=ListUsers&Version=2010-05-08",
        headers: &headers,
        body: Some(b""),
    };
    let verifier = Verifier::new([Credentials::new(AKID, SECRET)]);
    let signed_at = parse::parse_amz_date("20150830T123600Z").unwrap();
    let v = verifier.verify_at(&req, signed_at).unwrap();
    assert_eq!(v.scope.service, "iam");
    assert_eq!(
        v.payload,
        Payload::Sha256 {
            hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            checked: true
        }
    );

    // Unknown access key.
    let other = Verifier::new([Credentials::new("test", "test")]);
    let err = other.verify_at(&req, signed_at).unwrap_err();
    assert_eq!(err.code(), "UnrecognizedClientException");
    assert_eq!(
        err.to_string(),
        "The security token included in the request is invalid."
    );
    assert_eq!(err.code_for(Protocol::Query), "InvalidClientTokenId");

    // Expiry, with AWS's wording.
    let err = verifier
        .verify_at(
            &req,
            signed_at + Duration::minutes(15) + Duration::seconds(1),
        )
        .unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.to_string(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z \
         (20150830T125101Z - 15 min.)"
    );
    assert!(verifier
        .verify_at(&req, signed_at + Duration::minutes(15))
        .is_ok());
    let err = verifier
        .verify_at(&req, signed_at - Duration::minutes(16))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z \
         (20150830T122000Z + 15 min.)"
    );
    assert_eq!(err.code_for(Protocol::S3), "RequestTimeTooSkewed");
}

#[test]
fn brief_example_expiry_message() {
    // Signed at 12:36:00, checked at 12:51:00 + 5 min: AWS's example wording.
    let e = AuthError::SignatureExpired {
        signed: "20150830T123600Z".into(),
        earliest: "20150830T124100Z".into(),
        now: "20150830T125100Z".into(),
    };
    assert_eq!(
        e.to_string(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z \
         (20150830T125100Z - 15 min.)"
    );
    assert_eq!(
        AuthError::SignatureMismatch(Box::new(SignatureMismatch {
            access_key_id: String::new(),
            signature_provided: String::new(),
            canonical_request: String::new(),
            string_to_sign: String::new(),
        }))
        .to_string(),
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details."
    );
}
