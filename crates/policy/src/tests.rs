//! The evaluation table: cases after the examples of the IAM User Guide
//! ("Policy evaluation logic", "IAM JSON policy elements: Condition operators",
//! "Policy variables", the example policies), each asserting the outcome and
//! the deciding statement.

use crate::*;

const ACCT: &str = "123456789012";

fn user(name: &str) -> Caller {
    Caller::new(format!("arn:aws:iam::{ACCT}:user/{name}"), ACCT)
}

fn session(role: &str, s: &str) -> Caller {
    Caller {
        arn: format!("arn:aws:sts::{ACCT}:assumed-role/{role}/{s}"),
        aliases: vec![format!("arn:aws:iam::{ACCT}:role/{role}")],
        account: ACCT.into(),
        federated: None,
        service: None,
    }
}

fn ctx(pairs: &[(&str, &str)]) -> Context {
    let mut c = Context::new();
    for (k, v) in pairs {
        c.set(k, *v);
    }
    c
}

struct Case<'a> {
    name: &'a str,
    identity: &'a [&'a str],
    resource: Option<&'a str>,
    caller: Caller,
    action: &'a str,
    resource_arn: &'a str,
    context: Context,
    want: Outcome,
    /// The deciding statement's label, when one decides.
    by: Option<&'a str>,
}

fn run(cases: Vec<Case<'_>>) {
    for c in cases {
        let ids: Vec<Policy> = c
            .identity
            .iter()
            .map(|t| Policy::identity(t).unwrap_or_else(|e| panic!("{}: {e}", c.name)))
            .collect();
        let named: Vec<Named<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, p)| Named {
                name: ["p0", "p1", "p2"][i],
                policy: p,
            })
            .collect();
        let rp = c
            .resource
            .map(|t| Policy::resource(t).unwrap_or_else(|e| panic!("{}: {e}", c.name)));
        let req = Request {
            caller: &c.caller,
            action: c.action,
            resource: c.resource_arn,
            context: &c.context,
        };
        let d = evaluate(
            &req,
            &named,
            rp.as_ref().map(|p| Named {
                name: "resource",
                policy: p,
            }),
            &[],
        );
        assert_eq!(d.outcome, c.want, "{}", c.name);
        assert_eq!(
            d.by.as_ref().map(|b| b.statement.as_str()),
            c.by,
            "{}",
            c.name
        );
    }
}

#[test]
fn evaluation_logic() {
    let read_orders = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow",
        "Action":"dynamodb:GetItem","Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders"}]}"#;
    let deny_all_dynamo = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoDynamo","Effect":"Deny",
        "Action":"dynamodb:*","Resource":"*"}]}"#;
    let table = "arn:aws:dynamodb:us-east-1:123456789012:table/Orders";
    run(vec![
        Case {
            name: "an allow allows",
            identity: &[read_orders],
            resource: None,
            caller: session("app", "fn"),
            action: "dynamodb:GetItem",
            resource_arn: table,
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("Read"),
        },
        Case {
            name: "actions compare case-insensitively",
            identity: &[read_orders],
            resource: None,
            caller: session("app", "fn"),
            action: "DynamoDB:getitem",
            resource_arn: table,
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("Read"),
        },
        Case {
            name: "resources compare case-sensitively",
            identity: &[read_orders],
            resource: None,
            caller: session("app", "fn"),
            action: "dynamodb:GetItem",
            resource_arn: "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
            context: Context::new(),
            want: Outcome::ImplicitDeny,
            by: None,
        },
        Case {
            name: "another action is implicitly denied",
            identity: &[read_orders],
            resource: None,
            caller: session("app", "fn"),
            action: "dynamodb:PutItem",
            resource_arn: table,
            context: Context::new(),
            want: Outcome::ImplicitDeny,
            by: None,
        },
        Case {
            name: "an explicit deny in another policy overrides the allow",
            identity: &[read_orders, deny_all_dynamo],
            resource: None,
            caller: session("app", "fn"),
            action: "dynamodb:GetItem",
            resource_arn: table,
            context: Context::new(),
            want: Outcome::ExplicitDeny,
            by: Some("NoDynamo"),
        },
        Case {
            name: "no policies at all: implicit deny",
            identity: &[],
            resource: None,
            caller: user("bob"),
            action: "s3:GetObject",
            resource_arn: "arn:aws:s3:::b/k",
            context: Context::new(),
            want: Outcome::ImplicitDeny,
            by: None,
        },
    ]);
}

#[test]
fn not_action_and_not_resource() {
    // "Deny access to everything except IAM" (the NotAction example).
    let deny_but_iam = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"AllowAll","Effect":"Allow","Action":"*","Resource":"*"},
        {"Sid":"DenyAllButIAM","Effect":"Deny","NotAction":"iam:*","Resource":"*"}]}"#;
    // "Deny everything outside one bucket" (the NotResource example).
    let only_bucket = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"All","Effect":"Allow","Action":"s3:*","Resource":"*"},
        {"Sid":"Outside","Effect":"Deny","Action":"s3:*",
         "NotResource":["arn:aws:s3:::HRBucket/Payroll","arn:aws:s3:::HRBucket/Payroll/*"]}]}"#;
    run(vec![
        Case {
            name: "NotAction deny spares iam",
            identity: &[deny_but_iam],
            resource: None,
            caller: user("alice"),
            action: "iam:ListUsers",
            resource_arn: "*",
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("AllowAll"),
        },
        Case {
            name: "NotAction deny catches the rest",
            identity: &[deny_but_iam],
            resource: None,
            caller: user("alice"),
            action: "sqs:SendMessage",
            resource_arn: "arn:aws:sqs:us-east-1:123456789012:q",
            context: Context::new(),
            want: Outcome::ExplicitDeny,
            by: Some("DenyAllButIAM"),
        },
        Case {
            name: "NotResource deny spares the listed resources",
            identity: &[only_bucket],
            resource: None,
            caller: user("alice"),
            action: "s3:GetObject",
            resource_arn: "arn:aws:s3:::HRBucket/Payroll/june.csv",
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("All"),
        },
        Case {
            name: "NotResource deny catches other buckets",
            identity: &[only_bucket],
            resource: None,
            caller: user("alice"),
            action: "s3:GetObject",
            resource_arn: "arn:aws:s3:::Other/x",
            context: Context::new(),
            want: Outcome::ExplicitDeny,
            by: Some("Outside"),
        },
    ]);
}

#[test]
fn resource_policies_combine_with_identity_policies() {
    let allow_get = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Get","Effect":"Allow",
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}]}"#;
    let bucket_deny_bob = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoBob","Effect":"Deny",
        "Principal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"s3:*",
        "Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"]}]}"#;
    let bucket_allow_role = r#"{"Version":"2012-10-17","Statement":[{"Sid":"RoleReads","Effect":"Allow",
        "Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},"Action":"s3:GetObject",
        "Resource":"arn:aws:s3:::photos/*"}]}"#;
    let not_principal = r#"{"Version":"2012-10-17","Statement":[{"Sid":"OnlyAdmin","Effect":"Deny",
        "NotPrincipal":{"AWS":["arn:aws:iam::123456789012:user/admin"]},"Action":"s3:DeleteObject",
        "Resource":"arn:aws:s3:::photos/*"}]}"#;
    let obj = "arn:aws:s3:::photos/cat.jpg";
    run(vec![
        Case {
            name: "a bucket policy deny overrides the user's identity allow",
            identity: &[allow_get],
            resource: Some(bucket_deny_bob),
            caller: user("bob"),
            action: "s3:GetObject",
            resource_arn: obj,
            context: Context::new(),
            want: Outcome::ExplicitDeny,
            by: Some("NoBob"),
        },
        Case {
            name: "the deny names bob only",
            identity: &[allow_get],
            resource: Some(bucket_deny_bob),
            caller: user("carol"),
            action: "s3:GetObject",
            resource_arn: obj,
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("Get"),
        },
        Case {
            name: "a resource policy allow naming the role allows its sessions",
            identity: &[],
            resource: Some(bucket_allow_role),
            caller: session("app", "thumbs"),
            action: "s3:GetObject",
            resource_arn: obj,
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("RoleReads"),
        },
        Case {
            name: "and not other roles' sessions",
            identity: &[],
            resource: Some(bucket_allow_role),
            caller: session("other", "x"),
            action: "s3:GetObject",
            resource_arn: obj,
            context: Context::new(),
            want: Outcome::ImplicitDeny,
            by: None,
        },
        Case {
            name: "NotPrincipal deny applies to everyone but the named",
            identity: &[
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"S","Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ],
            resource: Some(not_principal),
            caller: user("bob"),
            action: "s3:DeleteObject",
            resource_arn: obj,
            context: Context::new(),
            want: Outcome::ExplicitDeny,
            by: Some("OnlyAdmin"),
        },
        Case {
            name: "NotPrincipal spares the named principal",
            identity: &[
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"S","Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ],
            resource: Some(not_principal),
            caller: user("admin"),
            action: "s3:DeleteObject",
            resource_arn: obj,
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("S"),
        },
        Case {
            name: "an account principal names every principal of the account",
            identity: &[],
            resource: Some(
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"Acct","Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sqs:SendMessage","Resource":"*"}]}"#,
            ),
            caller: user("dave"),
            action: "sqs:SendMessage",
            resource_arn: "arn:aws:sqs:us-east-1:123456789012:q",
            context: Context::new(),
            want: Outcome::Allow,
            by: Some("Acct"),
        },
    ]);
}

#[test]
fn condition_operators() {
    // "Denies access to AWS based on the source IP" example.
    let by_ip = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"},
        {"Sid":"IpDeny","Effect":"Deny","Action":"*","Resource":"*","Condition":{
          "NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]},
          "Bool":{"aws:ViaAWSService":"false"}}}]}"#;
    // "Allows access within specific dates" example.
    let dates = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Window","Effect":"Allow","Action":"sqs:*","Resource":"*",
        "Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-04-01T00:00:00Z"},
                     "DateLessThan":{"aws:CurrentTime":"2020-06-30T23:59:59Z"}}}]}"#;
    // The home-folder example with a policy variable.
    let home = r#"{"Version":"2012-10-17","Statement":[{"Sid":"List","Effect":"Allow","Action":"s3:ListBucket",
        "Resource":"arn:aws:s3:::bucket","Condition":{"StringLike":{"s3:prefix":["home/${aws:username}/*"]}}},
        {"Sid":"Objects","Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],
         "Resource":"arn:aws:s3:::bucket/home/${aws:username}/*"}]}"#;
    let mfa = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"},
        {"Sid":"NeedMfa","Effect":"Deny","Action":"iam:DeleteUser","Resource":"*",
         "Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}}]}"#;
    let null = r#"{"Version":"2012-10-17","Statement":[{"Sid":"OnlyTemp","Effect":"Allow","Action":"s3:*","Resource":"*",
        "Condition":{"Null":{"aws:TokenIssueTime":"false"}}}]}"#;
    let keys = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Attrs","Effect":"Allow","Action":"dynamodb:GetItem","Resource":"*",
        "Condition":{"ForAllValues:StringEquals":{"dynamodb:Attributes":["ID","Title"]}}},
        {"Sid":"Tags","Effect":"Allow","Action":"sqs:TagQueue","Resource":"*",
         "Condition":{"ForAnyValue:StringEquals":{"aws:TagKeys":["env"]}}}]}"#;
    let numeric = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Small","Effect":"Allow","Action":"s3:ListBucket","Resource":"*",
        "Condition":{"NumericLessThanEquals":{"s3:max-keys":"10"}}}]}"#;
    let arn = r#"{"Version":"2012-10-17","Statement":[{"Sid":"FromBucket","Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"*",
        "Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::photos*"}}}]}"#;
    let ic = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Region","Effect":"Allow","Action":"*","Resource":"*",
        "Condition":{"StringEqualsIgnoreCase":{"aws:RequestedRegion":"US-EAST-1"}}}]}"#;
    let neg = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NotProd","Effect":"Allow","Action":"*","Resource":"*",
        "Condition":{"StringNotEquals":{"aws:ResourceTag/env":"prod"}}}]}"#;
    let mut multi = Context::new();
    multi.set_many("dynamodb:Attributes", vec!["ID".into(), "Title".into()]);
    let mut multi_bad = Context::new();
    multi_bad.set_many("dynamodb:Attributes", vec!["ID".into(), "Secret".into()]);
    let mut tags = Context::new();
    tags.set_many("aws:TagKeys", vec!["team".into(), "env".into()]);
    let b = |name, policy, action, res, context, want, by| Case {
        name,
        identity: std::slice::from_ref(policy),
        resource: None,
        caller: user("alice"),
        action,
        resource_arn: res,
        context,
        want,
        by,
    };
    let via = |ip: &str| ctx(&[("aws:SourceIp", ip), ("aws:ViaAWSService", "false")]);
    run(vec![
        b(
            "inside the range",
            &by_ip,
            "sqs:SendMessage",
            "*",
            via("203.0.113.7"),
            Outcome::Allow,
            Some("All"),
        ),
        b(
            "outside every range",
            &by_ip,
            "sqs:SendMessage",
            "*",
            via("198.51.100.1"),
            Outcome::ExplicitDeny,
            Some("IpDeny"),
        ),
        b(
            "ipv4-mapped ipv6",
            &by_ip,
            "sqs:SendMessage",
            "*",
            via("::ffff:192.0.2.9"),
            Outcome::Allow,
            Some("All"),
        ),
        b(
            "inside the window",
            &dates,
            "sqs:SendMessage",
            "*",
            ctx(&[("aws:CurrentTime", "2020-05-01T12:00:00Z")]),
            Outcome::Allow,
            Some("Window"),
        ),
        b(
            "after the window",
            &dates,
            "sqs:SendMessage",
            "*",
            ctx(&[("aws:CurrentTime", "2021-01-01T00:00:00Z")]),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "epoch seconds compare as dates",
            &dates,
            "sqs:SendMessage",
            "*",
            ctx(&[("aws:CurrentTime", "1588334400")]),
            Outcome::Allow,
            Some("Window"),
        ),
        b(
            "own prefix",
            &home,
            "s3:ListBucket",
            "arn:aws:s3:::bucket",
            ctx(&[("aws:username", "alice"), ("s3:prefix", "home/alice/docs")]),
            Outcome::Allow,
            Some("List"),
        ),
        b(
            "another's prefix",
            &home,
            "s3:ListBucket",
            "arn:aws:s3:::bucket",
            ctx(&[("aws:username", "alice"), ("s3:prefix", "home/bob/")]),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "variable in the resource",
            &home,
            "s3:GetObject",
            "arn:aws:s3:::bucket/home/alice/x",
            ctx(&[("aws:username", "alice")]),
            Outcome::Allow,
            Some("Objects"),
        ),
        b(
            "variable without a value matches nothing",
            &home,
            "s3:GetObject",
            "arn:aws:s3:::bucket/home//x",
            Context::new(),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "IfExists: absent key",
            &mfa,
            "iam:DeleteUser",
            "*",
            Context::new(),
            Outcome::ExplicitDeny,
            Some("NeedMfa"),
        ),
        b(
            "IfExists: present and true",
            &mfa,
            "iam:DeleteUser",
            "*",
            ctx(&[("aws:MultiFactorAuthPresent", "true")]),
            Outcome::Allow,
            Some("All"),
        ),
        b(
            "Null false: key present",
            &null,
            "s3:GetObject",
            "*",
            ctx(&[("aws:TokenIssueTime", "2026-01-01T00:00:00Z")]),
            Outcome::Allow,
            Some("OnlyTemp"),
        ),
        b(
            "Null false: key absent",
            &null,
            "s3:GetObject",
            "*",
            Context::new(),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "ForAllValues: every value listed",
            &keys,
            "dynamodb:GetItem",
            "*",
            multi,
            Outcome::Allow,
            Some("Attrs"),
        ),
        b(
            "ForAllValues: one not listed",
            &keys,
            "dynamodb:GetItem",
            "*",
            multi_bad,
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "ForAllValues: key absent is vacuously true",
            &keys,
            "dynamodb:GetItem",
            "*",
            Context::new(),
            Outcome::Allow,
            Some("Attrs"),
        ),
        b(
            "ForAnyValue: one matches",
            &keys,
            "sqs:TagQueue",
            "*",
            tags,
            Outcome::Allow,
            Some("Tags"),
        ),
        b(
            "ForAnyValue: key absent",
            &keys,
            "sqs:TagQueue",
            "*",
            Context::new(),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "numeric within",
            &numeric,
            "s3:ListBucket",
            "*",
            ctx(&[("s3:max-keys", "10")]),
            Outcome::Allow,
            Some("Small"),
        ),
        b(
            "numeric over",
            &numeric,
            "s3:ListBucket",
            "*",
            ctx(&[("s3:max-keys", "11")]),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "numeric absent",
            &numeric,
            "s3:ListBucket",
            "*",
            Context::new(),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "ArnLike matches",
            &arn,
            "lambda:InvokeFunction",
            "*",
            ctx(&[("aws:SourceArn", "arn:aws:s3:::photos-in")]),
            Outcome::Allow,
            Some("FromBucket"),
        ),
        b(
            "ArnLike misses",
            &arn,
            "lambda:InvokeFunction",
            "*",
            ctx(&[("aws:SourceArn", "arn:aws:s3:::docs")]),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "IgnoreCase",
            &ic,
            "sqs:ListQueues",
            "*",
            ctx(&[("aws:RequestedRegion", "us-east-1")]),
            Outcome::Allow,
            Some("Region"),
        ),
        b(
            "negated operator, key absent: true",
            &neg,
            "sqs:ListQueues",
            "*",
            Context::new(),
            Outcome::Allow,
            Some("NotProd"),
        ),
        b(
            "negated operator, value listed",
            &neg,
            "sqs:ListQueues",
            "*",
            ctx(&[("aws:ResourceTag/env", "prod")]),
            Outcome::ImplicitDeny,
            None,
        ),
        b(
            "condition keys are case-insensitive",
            &ic,
            "sqs:ListQueues",
            "*",
            ctx(&[("AWS:requestedregion", "us-east-1")]),
            Outcome::Allow,
            Some("Region"),
        ),
    ]);
}

#[test]
fn session_policies_limit_identity_allows() {
    let all = Policy::identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    )
    .unwrap();
    let only_sqs = Policy::identity(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}"#).unwrap();
    let caller = session("admin", "s");
    let c = Context::new();
    let ask = |action| {
        let req = Request {
            caller: &caller,
            action,
            resource: "*",
            context: &c,
        };
        let d = evaluate(
            &req,
            &[Named {
                name: "all",
                policy: &all,
            }],
            None,
            &[Named {
                name: "session",
                policy: &only_sqs,
            }],
        );
        (d.allowed(), d.message(&req))
    };
    assert!(ask("sqs:SendMessage").0);
    let (ok, msg) = ask("s3:GetObject");
    assert!(!ok);
    assert!(
        msg.ends_with("because no session policy allows the s3:GetObject action"),
        "{msg}"
    );
}

#[test]
fn access_denied_messages_are_aws_words() {
    let caller = session("app", "fn");
    let c = Context::new();
    let req = Request {
        caller: &caller,
        action: "sqs:SendMessage",
        resource: "arn:aws:sqs:us-east-1:123456789012:q",
        context: &c,
    };
    let d = evaluate(&req, &[], None, &[]);
    assert_eq!(
        d.message(&req),
        "User: arn:aws:sts::123456789012:assumed-role/app/fn is not authorized to perform: \
         sqs:SendMessage on resource: arn:aws:sqs:us-east-1:123456789012:q because no \
         identity-based policy allows the sqs:SendMessage action"
    );
    let deny = Policy::identity(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"sqs:*","Resource":"*"}]}"#).unwrap();
    let d = evaluate(
        &req,
        &[Named {
            name: "d",
            policy: &deny,
        }],
        None,
        &[],
    );
    assert_eq!(d.by.as_ref().unwrap().statement, "Statement[0]");
    assert!(d
        .message(&req)
        .ends_with("with an explicit deny in an identity-based policy"));
}

#[test]
fn malformed_documents_get_iams_messages() {
    let id = |t: &str| Policy::identity(t).unwrap_err().0;
    let res = |t: &str| Policy::resource(t).unwrap_err().0;
    assert_eq!(id("{not json"), "Syntax errors in policy.");
    assert_eq!(
        id(r#"{"Version":"2012-10-17"}"#),
        "Syntax errors in policy."
    );
    assert_eq!(
        id(r#"{"Version":"2011-01-01","Statement":[]}"#),
        "The policy failed legacy parsing"
    );
    assert_eq!(
        id(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Resource":"*"}}"#),
        "Policy statement must contain actions."
    );
    assert_eq!(
        id(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*"}}"#),
        "Policy statement must contain resources."
    );
    assert_eq!(
        id(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"GetObject","Resource":"*"}}"#
        ),
        "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
    );
    assert_eq!(
        id(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#
        ),
        "Has prohibited field Principal"
    );
    assert_eq!(
        res(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}"#),
        "Missing required field Principal"
    );
    assert_eq!(
        id(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"bucket"}}"#
        ),
        "Resource bucket must be in ARN format or \"*\"."
    );
    assert_eq!(
        id(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEqualz":{"aws:username":"a"}}}}"#
        ),
        "Invalid Condition type : StringEqualz"
    );
    assert_eq!(
        id(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Effect2":"x","Action":"s3:*","Resource":"*"}}"#
        ),
        "Syntax errors in policy."
    );
    assert_eq!(
        id(
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#
        ),
        "Statement IDs (SID) in a single policy must be unique."
    );
    assert_eq!(
        id(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Permit","Action":"s3:*","Resource":"*"}}"#
        ),
        "Invalid effect: Permit"
    );
    // A trust policy: Principal, no Resource.
    assert!(Policy::resource(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}}"#).is_ok());
}

#[test]
fn sizes_count_without_whitespace_outside_strings() {
    assert_eq!(counted_size("{ \"a b\" : 1 }"), "{\"a b\":1}".len());
}

#[test]
fn variable_defaults_and_escapes() {
    let mut c = Context::new();
    c.set("aws:username", "alice");
    assert_eq!(
        eval::substitute(
            "a/${aws:username}/${*}/${aws:PrincipalTag/team, 'none'}",
            &c
        )
        .as_deref(),
        Some("a/alice/*/none")
    );
    assert_eq!(eval::substitute("${aws:userid}", &c), None);
}

#[test]
fn web_identity_trust_policies() {
    // The trust policy IAM's User Guide gives for GitHub Actions' OIDC provider.
    let gh = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Sid":"GitHub","Effect":"Allow",
        "Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
        "Action":"sts:AssumeRoleWithWebIdentity",
        "Condition":{"StringEquals":{"token.actions.githubusercontent.com:aud":"sts.amazonaws.com"},
                     "StringLike":{"token.actions.githubusercontent.com:sub":"repo:octo-org/octo-repo:*"}}}]}"#;
    let account_trust = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Account","Effect":"Allow",
        "Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
    let role = "arn:aws:iam::123456789012:role/deploy";
    let case = |name, resource, caller: Caller, sub: &str, want, by| Case {
        name,
        identity: &[],
        resource: Some(resource),
        caller,
        action: "sts:AssumeRoleWithWebIdentity",
        resource_arn: role,
        context: ctx(&[
            (
                "token.actions.githubusercontent.com:aud",
                "sts.amazonaws.com",
            ),
            ("token.actions.githubusercontent.com:sub", sub),
        ]),
        want,
        by,
    };
    run(vec![
        case(
            "the provider's token for the named repository",
            trust,
            Caller::federated(gh, ACCT),
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            Outcome::Allow,
            Some("GitHub"),
        ),
        case(
            "another repository's token",
            trust,
            Caller::federated(gh, ACCT),
            "repo:octo-org/other:ref:refs/heads/main",
            Outcome::ImplicitDeny,
            None,
        ),
        case(
            "another provider's token",
            trust,
            Caller::federated(
                "arn:aws:iam::123456789012:oidc-provider/accounts.google.com",
                ACCT,
            ),
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            Outcome::ImplicitDeny,
            None,
        ),
        case(
            "an IAM user is not the federated principal",
            trust,
            user("alice"),
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            Outcome::ImplicitDeny,
            None,
        ),
        case(
            "a web identity is no principal of the account",
            account_trust,
            Caller::federated(gh, ACCT),
            "repo:octo-org/octo-repo:x",
            Outcome::ImplicitDeny,
            None,
        ),
    ]);
}

#[test]
fn service_principals_in_function_policies() {
    // What `aws lambda add-permission --principal s3.amazonaws.com --source-arn
    // arn:aws:s3:::uploads --source-account 123456789012` writes.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"s3","Effect":"Allow",
        "Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction",
        "Resource":"arn:aws:lambda:us-east-1:123456789012:function:thumbs",
        "Condition":{"StringEquals":{"AWS:SourceAccount":"123456789012"},
                     "ArnLike":{"AWS:SourceArn":"arn:aws:s3:::uploads"}}}]}"#;
    let case = |name, caller: Caller, bucket: &str, want, by| Case {
        name,
        identity: &[],
        resource: Some(policy),
        caller,
        action: "lambda:InvokeFunction",
        resource_arn: "arn:aws:lambda:us-east-1:123456789012:function:thumbs",
        context: ctx(&[("aws:SourceArn", bucket), ("aws:SourceAccount", ACCT)]),
        want,
        by,
    };
    run(vec![
        case(
            "the named bucket",
            Caller::service("s3.amazonaws.com", ACCT),
            "arn:aws:s3:::uploads",
            Outcome::Allow,
            Some("s3"),
        ),
        case(
            "another bucket",
            Caller::service("s3.amazonaws.com", ACCT),
            "arn:aws:s3:::other",
            Outcome::ImplicitDeny,
            None,
        ),
        case(
            "another service",
            Caller::service("sns.amazonaws.com", ACCT),
            "arn:aws:s3:::uploads",
            Outcome::ImplicitDeny,
            None,
        ),
    ]);
    // A service is no principal of the account.
    let account = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
        "Principal":{"AWS":"123456789012"},"Action":"lambda:InvokeFunction","Resource":"*"}]}"#;
    run(vec![Case {
        name: "account principal",
        identity: &[],
        resource: Some(account),
        caller: Caller::service("s3.amazonaws.com", ACCT),
        action: "lambda:InvokeFunction",
        resource_arn: "arn:aws:lambda:us-east-1:123456789012:function:thumbs",
        context: Context::new(),
        want: Outcome::ImplicitDeny,
        by: None,
    }]);
}

#[test]
fn permissions_boundaries_limit_what_identity_policies_grant() {
    // The IAM User Guide's example: the identity allows s3:* and iam:CreateUser,
    // the boundary allows s3:*, cloudwatch:*, ec2:* — only s3:* is effective.
    let identity = Policy::identity(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Id","Effect":"Allow",
        "Action":["s3:*","iam:CreateUser"],"Resource":"*"}]}"#,
    )
    .unwrap();
    let boundary = Policy::identity(r#"{"Version":"2012-10-17","Statement":[{"Sid":"B","Effect":"Allow",
        "Action":["s3:*","cloudwatch:*","ec2:*"],"Resource":"*"},
        {"Sid":"NoSecrets","Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::secrets/*"}]}"#).unwrap();
    let caller = user("alice");
    let c = Context::new();
    let ask = |action, resource| {
        let req = Request {
            caller: &caller,
            action,
            resource,
            context: &c,
        };
        let d = evaluate_bounded(
            &req,
            &[Named {
                name: "id",
                policy: &identity,
            }],
            None,
            &[],
            Some(Named {
                name: "boundary",
                policy: &boundary,
            }),
        );
        (d.outcome, d.message(&req))
    };
    assert_eq!(ask("s3:PutObject", "arn:aws:s3:::b/k").0, Outcome::Allow);
    let (o, msg) = ask("iam:CreateUser", "*");
    assert_eq!(o, Outcome::ImplicitDeny);
    assert!(
        msg.ends_with("because no permissions boundary allows the iam:CreateUser action"),
        "{msg}"
    );
    // Allowed by the boundary, not by the identity.
    assert_eq!(ask("ec2:RunInstances", "*").0, Outcome::ImplicitDeny);
    let (o, msg) = ask("s3:GetObject", "arn:aws:s3:::secrets/k");
    assert_eq!(o, Outcome::ExplicitDeny);
    assert!(
        msg.ends_with("with an explicit deny in a permissions boundary"),
        "{msg}"
    );
}
