//! The routing table against real requests: every `fixtures/<client>-<service>-<operation>.http`
//! (raw HTTP/1.1 as botocore or the JS SDK v3 sent it) must reach `<service>`'s
//! front-end, signed as captured and, where the request names its API without a
//! signature, unsigned too. Plus the ambiguities and refusals spelled out.

use http::request::Parts;
use nimbus_edge::{Rule, Table, Unrecognised};
use nimbus_protocol::{Protocol, ServiceMeta};
use std::path::Path;

/// Every API the table is tested with, as botocore's models describe them
/// (`metadata` of each `service-2.json`; SQS also takes awsQuery).
macro_rules! meta {
    ($name:literal, $signing:literal, $prefix:literal, $version:literal, $proto:ident, [$($p:ident),*], $target:expr, $xmlns:expr, $qc:literal) => {
        ServiceMeta {
            name: $name,
            signing_name: $signing,
            endpoint_prefix: $prefix,
            api_version: $version,
            protocol: Protocol::$proto,
            protocols: &[$(Protocol::$p),*],
            target_prefix: $target,
            xml_namespace: $xmlns,
            query_compatible: $qc,
        }
    };
}

static METAS: &[ServiceMeta] = &[
    meta!(
        "nimbus",
        "nimbus",
        "nimbus",
        "",
        RestJson1,
        [RestJson1],
        None,
        None,
        false
    ),
    meta!(
        "lambda",
        "lambda",
        "lambda",
        "2015-03-31",
        RestJson1,
        [RestJson1],
        None,
        None,
        false
    ),
    meta!(
        "sts",
        "sts",
        "sts",
        "2011-06-15",
        AwsQuery,
        [AwsQuery],
        None,
        Some("https://sts.amazonaws.com/doc/2011-06-15/"),
        false
    ),
    meta!(
        "sqs",
        "sqs",
        "sqs",
        "2012-11-05",
        AwsJson10,
        [AwsJson10, AwsQuery],
        Some("AmazonSQS"),
        Some("http://queue.amazonaws.com/doc/2012-11-05/"),
        true
    ),
    meta!(
        "sns",
        "sns",
        "sns",
        "2010-03-31",
        AwsQuery,
        [AwsQuery],
        None,
        Some("http://sns.amazonaws.com/doc/2010-03-31/"),
        false
    ),
    meta!(
        "s3",
        "s3",
        "s3",
        "2006-03-01",
        RestXml,
        [RestXml],
        None,
        None,
        false
    ),
    meta!(
        "dynamodb",
        "dynamodb",
        "dynamodb",
        "2012-08-10",
        AwsJson10,
        [AwsJson10],
        Some("DynamoDB_20120810"),
        None,
        false
    ),
    meta!(
        "dynamodbstreams",
        "dynamodb",
        "streams.dynamodb",
        "2012-08-10",
        AwsJson10,
        [AwsJson10],
        Some("DynamoDBStreams_20120810"),
        None,
        false
    ),
    meta!(
        "kinesis",
        "kinesis",
        "kinesis",
        "2013-12-02",
        AwsJson11,
        [AwsJson11],
        Some("Kinesis_20131202"),
        None,
        false
    ),
    meta!(
        "events",
        "events",
        "events",
        "2015-10-07",
        AwsJson11,
        [AwsJson11],
        Some("AWSEvents"),
        None,
        false
    ),
    meta!(
        "secretsmanager",
        "secretsmanager",
        "secretsmanager",
        "2017-10-17",
        AwsJson11,
        [AwsJson11],
        Some("secretsmanager"),
        None,
        false
    ),
    meta!(
        "ssm",
        "ssm",
        "ssm",
        "2014-11-06",
        AwsJson11,
        [AwsJson11],
        Some("AmazonSSM"),
        None,
        false
    ),
    meta!(
        "ses",
        "ses",
        "email",
        "2010-12-01",
        AwsQuery,
        [AwsQuery],
        None,
        Some("http://ses.amazonaws.com/doc/2010-12-01/"),
        false
    ),
    meta!(
        "sesv2",
        "ses",
        "email",
        "2019-09-27",
        RestJson1,
        [RestJson1],
        None,
        None,
        false
    ),
    meta!(
        "iam",
        "iam",
        "iam",
        "2010-05-08",
        AwsQuery,
        [AwsQuery],
        None,
        Some("https://iam.amazonaws.com/doc/2010-05-08/"),
        false
    ),
];

fn table() -> Table {
    Table::new(METAS.iter().collect())
}

/// A raw HTTP/1.1 request: its head as `Parts`, and its body (de-chunked when
/// sent `Transfer-Encoding: chunked`).
fn parse(raw: &[u8]) -> (Parts, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a request head ends with an empty line");
    let head = std::str::from_utf8(&raw[..split]).expect("the head is text");
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, target) = (request_line.next().unwrap(), request_line.next().unwrap());
    let mut b = http::Request::builder().method(method).uri(target);
    let mut chunked = false;
    for line in lines {
        let (k, v) = line.split_once(':').expect("header line");
        chunked |= k.eq_ignore_ascii_case("transfer-encoding") && v.trim() == "chunked";
        b = b.header(k.trim(), v.trim());
    }
    if chunked {
        body = dechunk(&body);
    }
    (b.body(()).unwrap().into_parts().0, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..eol]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

/// The head without its signature (header and presigned query parameters).
fn unsigned(parts: &Parts) -> Parts {
    let mut p = parts.clone();
    p.headers.remove(http::header::AUTHORIZATION);
    if let Some(q) = p.uri.query() {
        let kept: Vec<(String, String)> = form_urlencoded_parse(q)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("X-Amz-"))
            .collect();
        let query: Vec<String> = kept.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let uri = if query.is_empty() {
            p.uri.path().to_owned()
        } else {
            format!("{}?{}", p.uri.path(), query.join("&"))
        };
        p.uri = uri.parse().unwrap();
    }
    p
}

fn form_urlencoded_parse(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Whether an unsigned copy of the request still names its API (S3 path-style on
/// a plain host does not: any first path segment may be a bucket).
fn names_its_api_unsigned(service: &str, parts: &Parts) -> bool {
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    service != "s3" || nimbus_edge::routes::is_s3_host(host)
}

#[test]
fn every_captured_request_reaches_its_front_end() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "http"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    let table = table();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &files {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let mut fields = name.splitn(3, '-');
        let (client, service, op) = (
            fields.next().unwrap(),
            fields.next().expect("<client>-<service>-<operation>"),
            fields.next().expect("<client>-<service>-<operation>"),
        );
        assert!(
            ["botocore", "jssdk"].contains(&client),
            "{name}: client must be botocore or jssdk"
        );
        assert!(
            METAS.iter().any(|m| m.name == service),
            "{name}: unknown service {service}"
        );
        assert!(!op.is_empty(), "{name}: no operation");
        let (parts, body) = parse(&std::fs::read(path).unwrap());
        match table.classify(&parts, Some(&body)) {
            Ok(r) if r.service == service => {}
            other => failures.push(format!("{name} (signed): {other:?}")),
        }
        if names_its_api_unsigned(service, &parts) {
            let bare = unsigned(&parts);
            match table.classify(&bare, Some(&body)) {
                Ok(r) if r.service == service => {}
                other => failures.push(format!("{name} (unsigned): {other:?}")),
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, files.len());
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn signed(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=00"
    )
}

const FORM: (&str, &str) = (
    "content-type",
    "application/x-www-form-urlencoded; charset=utf-8",
);

#[test]
fn shared_signing_names_are_told_apart() {
    let t = table();
    let ses = signed("ses");
    let v1 = req("POST", "/", &[("authorization", &ses), FORM]);
    let r = t
        .classify(&v1, Some(b"Action=SendEmail&Version=2010-12-01"))
        .unwrap();
    assert_eq!((r.service, r.protocol), ("ses", Protocol::AwsQuery));
    let v2 = req(
        "POST",
        "/v2/email/outbound-emails",
        &[("authorization", &ses)],
    );
    let r = t.classify(&v2, None).unwrap();
    assert_eq!((r.service, r.protocol), ("sesv2", Protocol::RestJson1));

    let ddb = signed("dynamodb");
    for (target, service) in [
        ("DynamoDB_20120810.GetItem", "dynamodb"),
        ("DynamoDBStreams_20120810.GetRecords", "dynamodbstreams"),
    ] {
        let p = req(
            "POST",
            "/",
            &[("authorization", &ddb), ("x-amz-target", target)],
        );
        assert_eq!(t.classify(&p, None).unwrap().service, service);
    }
}

#[test]
fn sqs_answers_in_the_protocol_it_was_asked_in() {
    let t = table();
    let sqs = signed("sqs");
    let json = req(
        "POST",
        "/",
        &[
            ("authorization", &sqs),
            ("x-amz-target", "AmazonSQS.SendMessage"),
        ],
    );
    let r = t.classify(&json, None).unwrap();
    assert_eq!(
        (r.service, r.protocol, r.rule),
        ("sqs", Protocol::AwsJson10, Rule::Scope)
    );
    let query = req("POST", "/", &[("authorization", &sqs), FORM]);
    let r = t.classify(&query, None).unwrap();
    assert_eq!((r.service, r.protocol), ("sqs", Protocol::AwsQuery));
    // Unsigned awsQuery, as older SDKs send it: by Version, once the form is read.
    let bare = req("POST", "/", &[FORM]);
    assert_eq!(t.classify(&bare, None), Err(Unrecognised::NeedsBody));
    let r = t
        .classify(
            &bare,
            Some(b"Action=ReceiveMessage&Version=2012-11-05&QueueUrl=x"),
        )
        .unwrap();
    assert_eq!(
        (r.service, r.protocol, r.rule),
        ("sqs", Protocol::AwsQuery, Rule::Action)
    );
    let get = req("GET", "/?Action=GetCallerIdentity&Version=2011-06-15", &[]);
    assert_eq!(t.classify(&get, None).unwrap().service, "sts");
}

#[test]
fn s3_by_signature_host_and_presigned_url() {
    let t = table();
    // Signed s3 with any path, even one that looks like another API's.
    for path in ["/2015-03-31/functions/x", "/v2/email/x", "/metrics", "/"] {
        let p = req("GET", path, &[("authorization", &signed("s3"))]);
        assert_eq!(t.classify(&p, None).unwrap().service, "s3", "{path}");
    }
    for host in [
        "bkt.localhost:4566",
        "bkt.s3.localhost",
        "bkt.s3.us-west-2.amazonaws.com",
        "s3.us-west-2.amazonaws.com",
    ] {
        let p = req("GET", "/k.txt", &[("host", host)]);
        let r = t.classify(&p, None).unwrap();
        assert_eq!((r.service, r.rule), ("s3", Rule::Host), "{host}");
    }
    let presigned = req(
        "GET",
        "/bkt/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
        &[("host", "localhost:4566")],
    );
    assert_eq!(t.classify(&presigned, None).unwrap().service, "s3");
}

#[test]
fn control_paths_and_lambda_prefixes() {
    let t = table();
    // The control API wins even when signed for another service.
    let p = req(
        "GET",
        "/_nimbus/functions",
        &[("authorization", &signed("lambda"))],
    );
    assert_eq!(t.classify(&p, None).unwrap().rule, Rule::Control);
    for auth in [None, Some(signed("lambda")), Some(signed("nimbus"))] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = t.classify(&req("GET", "/metrics", &headers), None).unwrap();
        assert_eq!(r.service, "nimbus", "{auth:?}");
    }
    // S3's bucket called `metrics`, by host.
    let r = t
        .classify(&req("GET", "/metrics", &[("host", "s3.localhost")]), None)
        .unwrap();
    assert_eq!(r.service, "s3");
    let r = t
        .classify(
            &req("POST", "/2015-03-31/functions/f/invocations", &[]),
            None,
        )
        .unwrap();
    assert_eq!((r.service, r.rule), ("lambda", Rule::Path));
}

#[test]
fn what_no_front_end_claims_is_named() {
    let t = table();
    let p = req("POST", "/", &[("x-amz-target", "AmazonFrobnicator.Frob")]);
    let e = t.classify(&p, None).unwrap_err();
    assert_eq!(
        e,
        Unrecognised::Target {
            target: "AmazonFrobnicator.Frob".into()
        }
    );
    assert_eq!(e.protocol(), Protocol::AwsJson11);
    assert!(e.error().message.contains("AmazonFrobnicator"));
    // Signed for DynamoDB with a target neither DynamoDB API has.
    let p = req(
        "POST",
        "/",
        &[
            ("authorization", &signed("dynamodb")),
            ("x-amz-target", "Bogus.Op"),
        ],
    );
    assert_eq!(
        t.classify(&p, None),
        Err(Unrecognised::Target {
            target: "Bogus.Op".into()
        })
    );

    let p = req("POST", "/", &[FORM]);
    let e = t
        .classify(&p, Some(b"Action=Frob&Version=1999-01-01"))
        .unwrap_err();
    assert_eq!(e.protocol(), Protocol::AwsQuery);
    assert_eq!(e.error().code, "InvalidAction");
    assert!(e.error().message.contains("Frob") && e.error().message.contains("1999-01-01"));

    let e = t
        .classify(
            &req(
                "DELETE",
                "/no/such/thing",
                &[("authorization", &signed("frob"))],
            ),
            None,
        )
        .unwrap_err();
    assert_eq!(e.error().status, 404);
    let m = e.error().message;
    assert!(
        m.contains("DELETE /no/such/thing") && m.contains("frob"),
        "{m}"
    );
}
