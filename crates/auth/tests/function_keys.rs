//! Function session keys through the verifier: requests signed by the `aws-sigv4`
//! crate (the AWS SDK for Rust's signer) with a function's temporary credentials,
//! in the header and as presigned URLs, verify only with the right session token,
//! act as the function's role, and stop verifying once the function is revoked.

use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use nimbus_auth::{
    AuthError, Credentials, KeyRing, Principal, Request, SessionCredentials, Verifier,
};
use std::sync::Arc;
use std::time::SystemTime;

const HOST: &str = "127.0.0.1:4566";
const BODY: &[u8] = b"Action=GetCallerIdentity&Version=2011-06-15";

struct Received {
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Received {
    fn verify(&self, v: &Verifier) -> Result<nimbus_auth::Verified, AuthError> {
        v.verify(&Request::new("POST", &self.uri, &self.headers, Some(BODY)))
    }
}

/// Sign an STS call as the SDKs do, with `token` as the session token.
fn signed(c: &SessionCredentials, token: Option<&str>, location: SignatureLocation) -> Received {
    let mut req = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("host", HOST)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
        .unwrap();
    let mut settings = SigningSettings::default();
    settings.signature_location = location;
    if location == SignatureLocation::QueryParams {
        settings.expires_in = Some(std::time::Duration::from_secs(300));
    }
    let identity = aws_credential_types::Credentials::new(
        &c.access_key_id,
        &c.secret_access_key,
        token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sts")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    let signable =
        SignableRequest::new("POST", "/", headers.into_iter(), SignableBody::Bytes(BODY)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    let (parts, ()) = req.into_parts();
    Received {
        uri: parts.uri,
        headers: parts.headers,
    }
}

fn ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::new([(
        Credentials::new("AKIDSTATIC", "static secret"),
        Principal::User("alice".into()),
    )]))
}

#[test]
fn function_keys_verify_with_their_token_and_act_as_the_role() {
    let ring = ring();
    let verifier = Verifier::with_key_ring(ring.clone());
    // Minted after the verifier was built: the verifier sees it.
    let c = ring.function_credentials("thumbs", "thumbs-role").unwrap();
    for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
        let v = signed(&c, Some(&c.session_token), location)
            .verify(&verifier)
            .unwrap_or_else(|e| panic!("{location:?}: {e}"));
        assert_eq!(v.scope.access_key_id, c.access_key_id);
        assert_eq!(
            v.principal,
            Principal::AssumedRole {
                role: "thumbs-role".into(),
                session: "thumbs".into()
            }
        );
    }
}

#[test]
fn a_missing_or_tampered_token_is_refused() {
    let ring = ring();
    let verifier = Verifier::with_key_ring(ring.clone());
    let c = ring.function_credentials("thumbs", "thumbs-role").unwrap();
    let other = ring.function_credentials("resize", "thumbs-role").unwrap();
    let mut tampered = c.session_token.clone();
    tampered.replace_range(..1, if tampered.starts_with('A') { "B" } else { "A" });
    for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
        for token in [
            None,
            Some(tampered.as_str()),
            Some(other.session_token.as_str()),
        ] {
            let err = signed(&c, token, location).verify(&verifier).unwrap_err();
            assert!(
                matches!(err, AuthError::InvalidToken { .. }),
                "{location:?} {token:?}: {err:?}"
            );
            assert_eq!(
                err.code_for(nimbus_auth::Protocol::Query),
                "InvalidClientTokenId"
            );
        }
    }
}

#[test]
fn revoked_keys_stop_verifying() {
    let ring = ring();
    let verifier = Verifier::with_key_ring(ring.clone());
    let c = ring.function_credentials("thumbs", "thumbs-role").unwrap();
    let req = signed(&c, Some(&c.session_token), SignatureLocation::Headers);
    assert!(req.verify(&verifier).is_ok());
    ring.revoke_function("thumbs");
    assert!(matches!(
        req.verify(&verifier),
        Err(AuthError::UnrecognizedClient { .. })
    ));
}

#[test]
fn static_keys_keep_their_principal() {
    let ring = ring();
    let verifier = Verifier::with_key_ring(ring);
    let c = SessionCredentials {
        access_key_id: "AKIDSTATIC".into(),
        secret_access_key: "static secret".into(),
        session_token: String::new(),
    };
    let v = signed(&c, None, SignatureLocation::Headers)
        .verify(&verifier)
        .unwrap();
    assert_eq!(v.principal, Principal::User("alice".into()));
}
