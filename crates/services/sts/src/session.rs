//! STS's credential operations: `AssumeRole` (the role's trust policy checked),
//! `GetSessionToken`, `GetAccessKeyInfo`. Issued credentials are random
//! (`ASIA…`, a 40-character secret, a session token), recorded in IAM's store
//! (so a restart keeps them until they expire) and registered in the key ring
//! with their expiry: a request signed with them after it gets `ExpiredToken`.

use crate::{xml_escape, Caller, QueryError, XMLNS};
use http::StatusCode;
use nimbus_core::{Principal, ACCOUNT_ID};
use nimbus_policy::{counted_size, Context, Kind, Policy};
use nimbus_svc_iam::store::{random_id, random_secret, Session};
use nimbus_svc_iam::Iam;

use crate::oidc::TokenError;

/// The packed session policy limit (AWS compresses; Nimbus counts characters).
const SESSION_POLICY_MAX: usize = 2048;

fn validation(message: impl Into<String>) -> QueryError {
    QueryError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
}

fn access_denied(message: impl Into<String>) -> QueryError {
    QueryError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
}

fn duration<'a>(
    param: &impl Fn(&str) -> Option<&'a str>,
    min: u32,
    max: u32,
    default: u32,
) -> Result<u32, QueryError> {
    let Some(v) = param("DurationSeconds") else {
        return Ok(default.min(max));
    };
    let n: u32 = v.parse().map_err(|_| {
        validation(format!(
            "1 validation error detected: Value '{v}' at 'durationSeconds' failed to satisfy \
             constraint: Member must be a number"
        ))
    })?;
    if n < min {
        return Err(validation(format!(
            "1 validation error detected: Value '{n}' at 'durationSeconds' failed to satisfy \
             constraint: Member must have value greater than or equal to {min}"
        )));
    }
    if n > max {
        return Err(validation(format!(
            "1 validation error detected: Value '{n}' at 'durationSeconds' failed to satisfy \
             constraint: Member must have value less than or equal to {max}"
        )));
    }
    Ok(n)
}

fn credentials_xml(s: &Session) -> String {
    format!(
        "    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      \
         <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      \
         <Expiration>{}</Expiration>\n    </Credentials>\n",
        s.access_key_id,
        xml_escape(&s.secret),
        s.token,
        iso(s.expires_ms)
    )
}

fn iso(ms: i64) -> String {
    let s = nimbus_core::format_ms(ms, "Z");
    match s.split_once('.') {
        Some((a, _)) => format!("{a}Z"),
        None => s,
    }
}

fn mint(iam: &Iam, mut s: Session) -> Result<Session, QueryError> {
    s.access_key_id = random_id("ASIA", 16);
    s.secret = random_secret(30);
    s.token = {
        use base64::Engine;
        let mut bytes = [0u8; 96];
        getrandom::fill(&mut bytes).map_err(|_| {
            QueryError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "no randomness",
            )
        })?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let now = nimbus_core::now_ms();
    // Forget what expired, in the ring and on disk.
    if let Some(ring) = iam.key_ring() {
        ring.sweep_expired(time::OffsetDateTime::now_utc());
    }
    let _ = iam.store.sweep_sessions(now);
    iam.store.put_session(s.clone()).map_err(|e| {
        QueryError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            e.message,
        )
    })?;
    iam.register_session(&s);
    Ok(s)
}

fn wrap(action: &str, result: &str) -> (String, String) {
    let request_id = nimbus_core::new_request_id();
    (
        format!(
            "<{action}Response xmlns=\"{XMLNS}\">\n  <{action}Result>\n{result}  </{action}Result>\n  \
             <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n\
             </{action}Response>\n"
        ),
        request_id,
    )
}

/// `AssumeRole`.
pub(crate) fn assume_role<'a>(
    iam: &Iam,
    caller: &Caller,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(String, String), QueryError> {
    let arn = param("RoleArn").ok_or_else(|| {
        validation("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
    })?;
    let session = param("RoleSessionName").ok_or_else(|| {
        validation("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
    })?;
    if !(2..=64).contains(&session.len())
        || !session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{session}' at 'roleSessionName' failed to \
             satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    if arn.len() < 20 || !arn.starts_with("arn:") {
        return Err(validation(format!("{arn} is invalid")));
    }
    let name = arn.rsplit('/').next().unwrap_or("");
    let denied = || {
        access_denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {arn}",
            caller.principal.arn()
        ))
    };
    let role = iam
        .store
        .role(name)
        .filter(|r| r.arn() == arn || arn.ends_with(&format!(":role/{name}")))
        .ok_or_else(denied)?;
    // The trust policy must let the caller in.
    let trust = Policy::resource(&role.trust_policy).map_err(|_| denied())?;
    let who = nimbus_svc_iam::authorize::caller(iam, &caller.principal);
    let mut ctx = nimbus_svc_iam::authorize::global_context(
        iam,
        &caller.principal,
        nimbus_core::DEFAULT_REGION,
        None,
    );
    ctx.extend(&Context::new());
    let req = nimbus_policy::Request {
        caller: &who,
        action: "sts:AssumeRole",
        resource: arn,
        context: &ctx,
    };
    let d = nimbus_policy::evaluate(
        &req,
        &[],
        Some(nimbus_policy::Named {
            name: "trust policy",
            policy: &trust,
        }),
        &[],
    );
    if !d.allowed() {
        return Err(denied());
    }
    let (s, secs, assumed) = role_session(iam, param, &role, session)?;
    tracing::info!(role = %role.name, session, expires_in_s = secs, caller = %caller.principal.arn(), "sts: role assumed");
    let result = format!(
        "{}    <AssumedRoleUser>\n      <AssumedRoleId>{}:{}</AssumedRoleId>\n      \
         <Arn>{}</Arn>\n    </AssumedRoleUser>\n    <PackedPolicySize>0</PackedPolicySize>\n",
        credentials_xml(&s),
        role.id,
        xml_escape(session),
        xml_escape(&assumed.arn())
    );
    Ok(wrap("AssumeRole", &result))
}

/// The `Policy` parameter: a session policy, validated and size-checked.
/// A session of `role` named `session` (AssumeRole, AssumeRoleWithWebIdentity):
/// its duration and session policy from the request, minted and registered;
/// with its lifetime in seconds and the assumed-role principal.
fn role_session<'a>(
    iam: &Iam,
    param: &impl Fn(&str) -> Option<&'a str>,
    role: &nimbus_svc_iam::store::Role,
    session: &str,
) -> Result<(Session, u32, Principal), QueryError> {
    let secs = duration(
        param,
        iam.min_session_seconds,
        role.max_session_duration,
        3600,
    )?;
    let policy = session_policy(param)?;
    let s = mint(
        iam,
        Session {
            access_key_id: String::new(),
            secret: String::new(),
            token: String::new(),
            role: Some(role.name.clone()),
            session_name: Some(session.to_owned()),
            user: None,
            // Whole seconds, so the `Expiration` answered is the exact expiry.
            expires_ms: (nimbus_core::now_ms() / 1000 + i64::from(secs)) * 1000,
            policy,
            policy_arns: vec![],
            federated: None,
        },
    )?;
    let assumed = Principal::AssumedRole {
        role: role.name.clone(),
        session: session.to_owned(),
    };
    Ok((s, secs, assumed))
}

fn session_policy<'a>(
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<String>, QueryError> {
    match param("Policy") {
        None => Ok(None),
        Some(p) => {
            if counted_size(p) > SESSION_POLICY_MAX {
                return Err(QueryError::new(
                    StatusCode::BAD_REQUEST,
                    "PackedPolicyTooLarge",
                    "Packed policy consumes more than 100% of the allotted size.",
                ));
            }
            Policy::parse(p, Kind::Identity).map_err(|e| {
                QueryError::new(StatusCode::BAD_REQUEST, "MalformedPolicyDocument", e.0)
            })?;
            Ok(Some(p.to_owned()))
        }
    }
}

fn required<'a>(
    param: &impl Fn(&str) -> Option<&'a str>,
    name: &str,
    member: &str,
) -> Result<&'a str, QueryError> {
    param(name).ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy \
             constraint: Member must not be null"
        ))
    })
}

fn check_session_name(session: &str) -> Result<(), QueryError> {
    if !(2..=64).contains(&session.len())
        || !session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{session}' at 'roleSessionName' failed to \
             satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    Ok(())
}

/// `AssumeRoleWithWebIdentity`: an OIDC ID token of a configured issuer (the
/// request itself is unsigned, as on AWS) buys a session of a role whose trust
/// policy lets that provider's `Federated` principal in, under its
/// `<provider>:aud`/`:sub` conditions.
pub(crate) fn assume_role_with_web_identity<'a>(
    iam: &Iam,
    caller: &Caller,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(String, String), QueryError> {
    let arn = required(param, "RoleArn", "roleArn")?;
    let session = required(param, "RoleSessionName", "roleSessionName")?;
    let token = required(param, "WebIdentityToken", "webIdentityToken")?;
    check_session_name(session)?;
    if !(4..=20_000).contains(&token.len()) {
        return Err(validation(
            "1 validation error detected: Value at 'webIdentityToken' failed to satisfy \
             constraint: Member must have length less than or equal to 20000",
        ));
    }
    if arn.len() < 20 || !arn.starts_with("arn:") {
        return Err(validation(format!("{arn} is invalid")));
    }
    if param("ProviderId").is_some() {
        return Err(QueryError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "Nimbus accepts OpenID Connect ID tokens only: ProviderId (OAuth 2.0 access \
             tokens of www.amazon.com and graph.facebook.com) is not supported.",
        ));
    }
    let verified = caller
        .runtime
        .block_on(caller.oidc.verify(token))
        .map_err(|e| {
            tracing::info!(role = arn, error = ?e, "sts: web identity token refused");
            match e {
                TokenError::Invalid(m) => {
                    QueryError::new(StatusCode::BAD_REQUEST, "InvalidIdentityToken", m)
                }
                TokenError::Expired(m) => {
                    QueryError::new(StatusCode::BAD_REQUEST, "ExpiredTokenException", m)
                }
                TokenError::Rejected(m) => {
                    QueryError::new(StatusCode::FORBIDDEN, "IDPRejectedClaim", m)
                }
                TokenError::Communication(m) => {
                    QueryError::new(StatusCode::BAD_REQUEST, "IDPCommunicationError", m)
                }
            }
        })?;
    let provider = verified.provider();
    let provider_arn = format!("arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{provider}");
    let sub = verified.claim("sub").unwrap_or_default().to_owned();
    let denied = || access_denied("Not authorized to perform sts:AssumeRoleWithWebIdentity");
    let name = arn.rsplit('/').next().unwrap_or("");
    let role = iam
        .store
        .role(name)
        .filter(|r| r.arn() == arn || arn.ends_with(&format!(":role/{name}")))
        .ok_or_else(denied)?;
    let trust = Policy::resource(&role.trust_policy).map_err(|_| denied())?;
    let who = nimbus_policy::Caller::federated(provider_arn.clone(), ACCOUNT_ID);
    let mut ctx = Context::new();
    ctx.set_many(&format!("{provider}:aud"), verified.audiences());
    ctx.set(&format!("{provider}:sub"), sub.clone());
    for claim in ["azp", "amr", "email"] {
        if let Some(v) = verified.claim(claim) {
            ctx.set(&format!("{provider}:{claim}"), v);
        }
    }
    ctx.set("aws:FederatedProvider", provider_arn.clone());
    ctx.set("aws:RequestedRegion", nimbus_core::DEFAULT_REGION);
    let now = time::OffsetDateTime::now_utc();
    ctx.set(
        "aws:CurrentTime",
        now.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    ctx.set("aws:EpochTime", now.unix_timestamp().to_string());
    let req = nimbus_policy::Request {
        caller: &who,
        action: "sts:AssumeRoleWithWebIdentity",
        resource: arn,
        context: &ctx,
    };
    let d = nimbus_policy::evaluate(
        &req,
        &[],
        Some(nimbus_policy::Named {
            name: "trust policy",
            policy: &trust,
        }),
        &[],
    );
    if !d.allowed() {
        tracing::info!(role = %role.name, provider = %provider, sub = %sub, "sts: web identity not trusted by the role");
        return Err(denied());
    }
    let (s, secs, assumed) = role_session(iam, param, &role, session)?;
    tracing::info!(role = %role.name, session, provider = %provider, sub = %sub, expires_in_s = secs, "sts: role assumed with a web identity");
    let audience = verified
        .claim("azp")
        .map(str::to_owned)
        .or_else(|| verified.audiences().into_iter().next())
        .unwrap_or_default();
    let result = format!(
        "{}    <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\n    \
         <AssumedRoleUser>\n      <AssumedRoleId>{}:{}</AssumedRoleId>\n      \
         <Arn>{}</Arn>\n    </AssumedRoleUser>\n    <PackedPolicySize>0</PackedPolicySize>\n    \
         <Provider>{}</Provider>\n    <Audience>{}</Audience>\n",
        credentials_xml(&s),
        xml_escape(&sub),
        role.id,
        xml_escape(session),
        xml_escape(&assumed.arn()),
        xml_escape(&verified.issuer),
        xml_escape(&audience)
    );
    Ok(wrap("AssumeRoleWithWebIdentity", &result))
}

/// `PolicyArns.member.N.arn`: managed session policies (which must exist).
fn policy_arns<'a>(
    iam: &Iam,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Vec<String>, QueryError> {
    let mut out = vec![];
    for i in 1.. {
        let Some(arn) = param(&format!("PolicyArns.member.{i}.arn")) else {
            break;
        };
        if i > 10 {
            return Err(validation(
                "1 validation error detected: Value at 'policyArns' failed to satisfy \
                 constraint: Member must have length less than or equal to 10",
            ));
        }
        if !iam.store.has_policy(arn) {
            return Err(QueryError::new(
                StatusCode::BAD_REQUEST,
                "MalformedPolicyDocument",
                format!("The policy {arn} does not exist or is not attachable."),
            ));
        }
        out.push(arn.to_owned());
    }
    Ok(out)
}

/// `GetFederationToken`: credentials of a federated user, asked for with an
/// IAM user's (or the root's) long-term key; the session may do what both the
/// asker's policies and the session policies (`Policy`, `PolicyArns`) allow —
/// nothing when none is passed, as on AWS.
pub(crate) fn get_federation_token<'a>(
    iam: &Iam,
    caller: &Caller,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(String, String), QueryError> {
    let name = required(param, "Name", "name")?;
    if !(2..=32).contains(&name.len())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    let session_creds = caller
        .access_key_id
        .as_deref()
        .is_some_and(|k| iam.store.session(k).is_some());
    let (max, default, user) = match &caller.principal {
        _ if session_creds => {
            return Err(access_denied(
                "Cannot call GetFederationToken with session credentials",
            ))
        }
        Principal::Root => (3600, 3600, None),
        Principal::User(u) => (129_600, 43_200, Some(u.clone())),
        Principal::AssumedRole { .. } | Principal::FederatedUser { .. } => {
            return Err(access_denied(
                "Cannot call GetFederationToken with session credentials",
            ))
        }
    };
    let secs = duration(param, iam.min_session_seconds, max, default)?;
    let policy = session_policy(param)?;
    let arns = policy_arns(iam, param)?;
    let s = mint(
        iam,
        Session {
            access_key_id: String::new(),
            secret: String::new(),
            token: String::new(),
            role: None,
            session_name: None,
            user,
            expires_ms: (nimbus_core::now_ms() / 1000 + i64::from(secs)) * 1000,
            policy,
            policy_arns: arns,
            federated: Some(name.to_owned()),
        },
    )?;
    let arn = s.principal().arn();
    tracing::info!(name, expires_in_s = secs, caller = %caller.principal.arn(), "sts: federation token issued");
    let result = format!(
        "{}    <FederatedUser>\n      <FederatedUserId>{ACCOUNT_ID}:{}</FederatedUserId>\n      \
         <Arn>{}</Arn>\n    </FederatedUser>\n    <PackedPolicySize>0</PackedPolicySize>\n",
        credentials_xml(&s),
        xml_escape(name),
        xml_escape(&arn)
    );
    Ok(wrap("GetFederationToken", &result))
}

/// `GetSessionToken`: temporary credentials of the calling user (or root).
pub(crate) fn get_session_token<'a>(
    iam: &Iam,
    caller: &Caller,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(String, String), QueryError> {
    if caller
        .access_key_id
        .as_deref()
        .is_some_and(|k| iam.store.session(k).is_some())
    {
        return Err(access_denied(
            "Cannot call GetSessionToken with session credentials",
        ));
    }
    let (max, user) = match &caller.principal {
        Principal::Root => (3600, None),
        Principal::User(u) => (129_600, Some(u.clone())),
        Principal::AssumedRole { .. } | Principal::FederatedUser { .. } => {
            return Err(access_denied(
                "Cannot call GetSessionToken with session credentials",
            ))
        }
    };
    let secs = duration(param, iam.min_session_seconds, max, 43_200)?;
    let s = mint(
        iam,
        Session {
            access_key_id: String::new(),
            secret: String::new(),
            token: String::new(),
            role: None,
            session_name: None,
            user,
            // Whole seconds, so the `Expiration` answered is the exact expiry.
            expires_ms: (nimbus_core::now_ms() / 1000 + i64::from(secs)) * 1000,
            policy: None,
            policy_arns: vec![],
            federated: None,
        },
    )?;
    Ok(wrap("GetSessionToken", &credentials_xml(&s)))
}

/// `GetAccessKeyInfo`: the account of a key (every key is this account's).
pub(crate) fn get_access_key_info<'a>(
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(String, String), QueryError> {
    let key = param("AccessKeyId").ok_or_else(|| {
        validation("1 validation error detected: Value null at 'accessKeyId' failed to satisfy constraint: Member must not be null")
    })?;
    if !(16..=128).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(validation(format!(
            "1 validation error detected: Value '{key}' at 'accessKeyId' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [\\w]*"
        )));
    }
    Ok(wrap(
        "GetAccessKeyInfo",
        &format!("    <Account>{ACCOUNT_ID}</Account>\n"),
    ))
}
