//! Reading the signature's inputs out of a request: the `Authorization` header or
//! the presigned `X-Amz-*` query parameters, the credential scope, the timestamp.

use crate::canonical::decode_component;
use crate::signing::ALGORITHM;
use crate::{AuthError, Scope};
use http::HeaderMap;
use time::format_description::well_known::Rfc2822;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// SigV4a, which we recognise only to refuse it clearly.
const ALGORITHM_V4A: &str = "AWS4-ECDSA-P256-SHA256";

/// Longest validity of a presigned URL: seven days.
pub(crate) const MAX_PRESIGN_EXPIRES_S: u64 = 7 * 24 * 3600;

/// Everything the signature depends on besides the request itself.
#[derive(Debug)]
pub(crate) struct AuthInput {
    /// `AKID/20150830/us-east-1/service/aws4_request`.
    pub credential: String,
    pub signed_headers: String,
    pub signature: String,
    /// `X-Amz-Date` as sent (ISO 8601 basic), or the `Date` header reformatted.
    pub amz_date: String,
    pub signed_at: OffsetDateTime,
    pub presigned: bool,
    /// `X-Amz-Expires` (presigned only).
    pub expires_s: Option<u64>,
    /// `X-Amz-Content-Sha256` as a query parameter (presigned only).
    pub query_content_sha256: Option<String>,
}

/// Find and parse the request's SigV4 authentication.
pub(crate) fn auth_input(headers: &HeaderMap, query: &str) -> Result<AuthInput, AuthError> {
    let authorization = headers.get(http::header::AUTHORIZATION);
    let params = amz_query_params(query);
    let in_query = params
        .iter()
        .any(|(k, _)| k == "X-Amz-Algorithm" || k == "X-Amz-Signature");
    match (authorization, in_query) {
        (Some(_), true) => Err(AuthError::incomplete(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the \
             Authorization header should be specified.",
        )),
        (Some(value), false) => header_input(&String::from_utf8_lossy(value.as_bytes()), headers),
        (None, true) => presigned_input(&params),
        (None, false) => {
            if query_has(query, "AWSAccessKeyId") && query_has(query, "Signature") {
                Err(AuthError::incomplete_query(
                    "Nimbus accepts only Signature Version 4 (AWS4-HMAC-SHA256); \
                     this request uses Signature Version 2.",
                ))
            } else {
                Err(AuthError::MissingAuthenticationToken)
            }
        }
    }
}

fn query_has(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == name)
}

/// The decoded `X-Amz-*` parameters of a query string (first occurrence wins).
fn amz_query_params(query: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = decode_component(k);
        if k.starts_with("X-Amz-") && !out.iter().any(|(seen, _)| *seen == k) {
            out.push((k, decode_component(v)));
        }
    }
    out
}

fn header_input(value: &str, headers: &HeaderMap) -> Result<AuthInput, AuthError> {
    let trimmed = value.trim();
    let (algorithm, rest) = trimmed
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((trimmed, ""));
    if algorithm == ALGORITHM_V4A {
        return Err(AuthError::incomplete(format!(
            "Nimbus does not support Signature Version 4A ({ALGORITHM_V4A}); sign with {ALGORITHM}."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    if algorithm == ALGORITHM {
        for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(AuthError::incomplete(format!(
                    "'{part}' not a valid key=value pair (missing equal-sign) in Authorization \
                     header: '{trimmed}'."
                )));
            };
            let v = Some(v.trim().to_owned());
            match k.trim() {
                "Credential" => credential = v,
                "SignedHeaders" => signed_headers = v,
                "Signature" => signature = v,
                _ => {}
            }
        }
    }
    let date = request_date(headers)?;
    let mut missing = String::new();
    for (name, seen) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !seen {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    if date.is_none() {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    match (credential, signed_headers, signature, date) {
        (Some(credential), Some(signed_headers), Some(signature), Some((amz_date, signed_at)))
            if missing.is_empty() =>
        {
            Ok(AuthInput {
                credential,
                signed_headers,
                signature,
                amz_date,
                signed_at,
                presigned: false,
                expires_s: None,
                query_content_sha256: None,
            })
        }
        _ => Err(AuthError::incomplete(format!(
            "{missing}Authorization={trimmed}"
        ))),
    }
}

/// The request time of header auth: `X-Amz-Date`, else `Date`.
fn request_date(headers: &HeaderMap) -> Result<Option<(String, OffsetDateTime)>, AuthError> {
    if let Some(v) = headers.get("x-amz-date") {
        let s = String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
        return match parse_amz_date(&s) {
            Some(t) => Ok(Some((s, t))),
            None => Err(AuthError::incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{s}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ))),
        };
    }
    if let Some(v) = headers.get(http::header::DATE) {
        let s = String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
        let t = parse_amz_date(&s).or_else(|| OffsetDateTime::parse(&s, &Rfc2822).ok());
        return match t {
            Some(t) => Ok(Some((format_amz_date(t), t))),
            None => Err(AuthError::incomplete(format!(
                "Date must be in ISO-8601 'basic format' or RFC 1123. Got '{s}'."
            ))),
        };
    }
    Ok(None)
}

fn presigned_input(params: &[(String, String)]) -> Result<AuthInput, AuthError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut missing = String::new();
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
        "X-Amz-Date",
    ] {
        if get(name).is_none() {
            missing.push_str(&format!(
                "AWS query-string parameters must include '{name}'. "
            ));
        }
    }
    if !missing.is_empty() {
        return Err(AuthError::incomplete_query(format!(
            "{missing}Re-examine the query-string parameters."
        )));
    }
    let algorithm = get("X-Amz-Algorithm").unwrap_or_default();
    if algorithm != ALGORITHM {
        return Err(AuthError::incomplete_query(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\"; got \"{algorithm}\"."
        )));
    }
    let amz_date = get("X-Amz-Date").unwrap_or_default();
    let Some(signed_at) = parse_amz_date(&amz_date) else {
        return Err(AuthError::incomplete_query(format!(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"; got '{amz_date}'."
        )));
    };
    let expires_s = match get("X-Amz-Expires") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_PRESIGN_EXPIRES_S).contains(&n) => Some(n),
            _ => {
                return Err(AuthError::incomplete_query(format!(
                    "X-Amz-Expires must be a whole number of seconds from 1 to \
                     {MAX_PRESIGN_EXPIRES_S} (a week); got '{v}'."
                )))
            }
        },
    };
    Ok(AuthInput {
        credential: get("X-Amz-Credential").unwrap_or_default(),
        signed_headers: get("X-Amz-SignedHeaders").unwrap_or_default(),
        signature: get("X-Amz-Signature").unwrap_or_default(),
        amz_date,
        signed_at,
        presigned: true,
        expires_s,
        query_content_sha256: get("X-Amz-Content-Sha256"),
    })
}

/// Split `AKID/20150830/us-east-1/service/aws4_request` into a [`Scope`].
pub(crate) fn parse_scope(credential: &str, presigned: bool) -> Result<Scope, AuthError> {
    let err = |m: String| {
        if presigned {
            AuthError::incomplete_query(m)
        } else {
            AuthError::incomplete(m)
        }
    };
    let parts: Vec<&str> = credential.rsplitn(5, '/').collect();
    let [terminator, service, region, date, access_key_id] = parts[..] else {
        return Err(err(format!(
            "Credential must have the form '<access key>/<YYYYMMDD>/<region>/<service>/aws4_request'; \
             got '{credential}'."
        )));
    };
    if terminator != "aws4_request" {
        return Err(err(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!(
            "Credential should be scoped to a valid date (YYYYMMDD), not '{date}'."
        )));
    }
    if region.is_empty() {
        return Err(err(
            "Credential should be scoped to a valid region, not ''.".into(),
        ));
    }
    if service.is_empty() {
        return Err(err(
            "Credential should be scoped to correct service: ''.".into()
        ));
    }
    if access_key_id.is_empty() {
        return Err(err(format!(
            "Credential has no access key id: '{credential}'."
        )));
    }
    Ok(Scope {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    })
}

/// Parse `20150830T123600Z`.
pub(crate) fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(|t| t.assume_utc())
}

/// Format as `20150830T123600Z`.
pub(crate) fn format_amz_date(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(fmt)
        .expect("a UTC date-time always formats")
}

/// The scope of a request, if it names one, without checking anything.
pub(crate) fn scope_unverified(headers: &HeaderMap, query: &str) -> Option<Scope> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = String::from_utf8_lossy(v.as_bytes());
        let credential = v
            .split([',', ' '])
            .find_map(|p| p.trim().strip_prefix("Credential="))?;
        return parse_scope(credential.trim(), false).ok();
    }
    let params = amz_query_params(query);
    let (_, credential) = params.iter().find(|(k, _)| k == "X-Amz-Credential")?;
    parse_scope(credential, true).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn parses_authorization_with_and_without_spaces() {
        for auth in [
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/sts/aws4_request,SignedHeaders=host;x-amz-date,Signature=abcd",
        ] {
            let mut h = headers(&[("x-amz-date", "20150830T123600Z")]);
            h.insert("authorization", HeaderValue::from_str(auth).unwrap());
            let input = auth_input(&h, "").unwrap();
            assert_eq!(input.signed_headers, "host;x-amz-date");
            assert_eq!(input.signature, "abcd");
            let scope = parse_scope(&input.credential, false).unwrap();
            assert_eq!(
                (scope.access_key_id.as_str(), scope.region.as_str(), scope.service.as_str()),
                ("AKID", "us-east-1", "sts")
            );
        }
    }

    #[test]
    fn incomplete_header_names_every_missing_part_like_aws() {
        let h = headers(&[("authorization", "AWS xxxxx:yyyyyyy")]);
        let err = auth_input(&h, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Authorization header requires 'Credential' parameter. Authorization header requires \
             'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. \
             Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
             Authorization=AWS xxxxx:yyyyyyy"
        );
        assert_eq!(err.code(), "IncompleteSignatureException");

        let h = headers(&[
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential AKID/20150830/us-east-1/s/aws4_request",
            ),
        ]);
        assert!(auth_input(&h, "")
            .unwrap_err()
            .to_string()
            .contains("not a valid key=value pair (missing equal-sign)"));
    }

    #[test]
    fn no_auth_at_all_is_missing_token() {
        let err = auth_input(&HeaderMap::new(), "Action=ListUsers").unwrap_err();
        assert_eq!(err, AuthError::MissingAuthenticationToken);
        assert_eq!(err.code(), "MissingAuthenticationTokenException");
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn both_mechanisms_is_an_error() {
        let h = headers(&[("authorization", "AWS4-HMAC-SHA256 Credential=a")]);
        assert!(matches!(
            auth_input(&h, "X-Amz-Algorithm=AWS4-HMAC-SHA256"),
            Err(AuthError::IncompleteSignature { .. })
        ));
    }

    #[test]
    fn presigned_params_are_all_required() {
        let err = auth_input(
            &HeaderMap::new(),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20150830T123600Z",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string \
             parameters must include 'X-Amz-Signature'. AWS query-string parameters must include \
             'X-Amz-SignedHeaders'. Re-examine the query-string parameters."
        );
        assert_eq!(
            err.code_for(crate::Protocol::S3),
            "AuthorizationQueryParametersError"
        );
    }

    #[test]
    fn presigned_expiry_is_bounded_to_a_week() {
        let q = |exp: &str| {
            format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F20150830%2Fus-east-1%2Fs3%2Faws4_request\
                 &X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Expires={exp}"
            )
        };
        assert_eq!(
            auth_input(&HeaderMap::new(), &q("604800"))
                .unwrap()
                .expires_s,
            Some(604800)
        );
        assert!(auth_input(&HeaderMap::new(), &q("604801")).is_err());
        assert!(auth_input(&HeaderMap::new(), &q("0")).is_err());
        assert!(auth_input(&HeaderMap::new(), &q("-5")).is_err());
    }

    #[test]
    fn credential_scope_must_be_well_formed() {
        assert!(parse_scope("AKID/20150830/us-east-1/s3/aws4_request", false).is_ok());
        for bad in [
            "AKID/20150830/us-east-1/s3/aws5_request",
            "AKID/2015083/us-east-1/s3/aws4_request",
            "AKID/20150830/us-east-1/aws4_request",
            "/20150830/us-east-1/s3/aws4_request",
            "AKID/20150830//s3/aws4_request",
        ] {
            assert!(
                matches!(
                    parse_scope(bad, false),
                    Err(AuthError::IncompleteSignature { .. })
                ),
                "{bad}"
            );
        }
        let err = parse_scope("AKID/20150830/us-east-1/s3/aws5_request", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."
        );
    }

    #[test]
    fn date_header_is_a_fallback_for_x_amz_date() {
        let h = headers(&[
            ("date", "Sun, 30 Aug 2015 12:36:00 GMT"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/s/aws4_request, SignedHeaders=date;host, Signature=00"),
        ]);
        assert_eq!(auth_input(&h, "").unwrap().amz_date, "20150830T123600Z");
    }

    #[test]
    fn scope_without_verification() {
        let h = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20240101/eu-west-1/sqs/aws4_request, SignedHeaders=host, Signature=x",
        )]);
        let s = scope_unverified(&h, "").unwrap();
        assert_eq!(
            (s.region.as_str(), s.service.as_str()),
            ("eu-west-1", "sqs")
        );
        let s = scope_unverified(
            &HeaderMap::new(),
            "X-Amz-Credential=test%2F20240101%2Fap-south-1%2Fs3%2Faws4_request&X-Amz-Signature=1",
        )
        .unwrap();
        assert_eq!(
            (s.region.as_str(), s.service.as_str()),
            ("ap-south-1", "s3")
        );
        assert!(scope_unverified(&HeaderMap::new(), "a=b").is_none());
    }
}
