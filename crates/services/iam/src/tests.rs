//! Store and seam tests (the wire is tested end to end in tests/e2e/test_iam_*.py).

use super::*;

#[test]
fn roles_persist_and_policies_apply_without_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let iam = Iam::open(dir.path(), None, Mode::Enforce).unwrap();
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:GetItem","Resource":"*"}]}"#;
    iam.ensure_role("app", None, &[("ddb".into(), doc.into())], &[])
        .unwrap();
    let p = nimbus_core::Principal::AssumedRole {
        role: "app".into(),
        session: "fn".into(),
    };
    assert!(authorize::identity_allows(
        &iam,
        &p,
        None,
        "dynamodb:GetItem",
        "arn:aws:dynamodb:us-east-1:123456789012:table/T"
    ));
    assert!(!authorize::identity_allows(
        &iam,
        &p,
        None,
        "dynamodb:PutItem",
        "arn:aws:dynamodb:us-east-1:123456789012:table/T"
    ));
    // Reopened: the role and its policy are on disk.
    drop(iam);
    let iam = Iam::open(dir.path(), None, Mode::Enforce).unwrap();
    let role = iam.store.role("app").unwrap();
    assert_eq!(role.inline.get("ddb").map(String::as_str), Some(doc));
    assert!(role.id.starts_with("AROA") && role.id.len() == 21);
    // A missing role is reported as such; the root and non-IAM users are admins.
    let ghost = nimbus_core::Principal::AssumedRole {
        role: "ghost".into(),
        session: "f".into(),
    };
    assert!(matches!(iam.store.identity(&ghost, None), Identity::MissingRole(r) if r == "ghost"));
    assert!(matches!(
        iam.store.identity(&nimbus_core::Principal::Root, None),
        Identity::Admin
    ));
    assert!(matches!(
        iam.store
            .identity(&nimbus_core::Principal::User("ops".into()), None),
        Identity::Admin
    ));
    // Malformed documents are refused with IAM's error.
    let e = iam
        .ensure_role("bad", None, &[("p".into(), "{}".into())], &[])
        .unwrap_err();
    assert_eq!(e.code, "MalformedPolicyDocument");
    assert!(iam.store.role("bad").is_none());
}

#[test]
fn simulate_names_the_deciding_statement() {
    let dir = tempfile::tempdir().unwrap();
    let iam = Iam::open(dir.path(), None, Mode::Audit).unwrap();
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Reads","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
    iam.ensure_role("r", None, &[("p".into(), doc.into())], &[])
        .unwrap();
    let p = simulate::principal_of("arn:aws:iam::123456789012:role/r").unwrap();
    let s = simulate::simulate(
        &iam,
        Some(&p),
        &[],
        None,
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        &Default::default(),
    )
    .unwrap();
    assert!(s.decision.allowed());
    assert_eq!(s.decision.by.unwrap().statement, "Reads");
    let s = simulate::simulate(
        &iam,
        Some(&p),
        &[],
        None,
        "s3:PutObject",
        "arn:aws:s3:::b/k",
        &Default::default(),
    )
    .unwrap();
    assert!(!s.decision.allowed());
    assert!(s
        .message
        .contains("because no identity-based policy allows the s3:PutObject action"));
}
