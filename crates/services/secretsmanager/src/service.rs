//! The Secrets Manager operations over the in-memory index of secrets, written
//! through to `secretsmanager.db` in one transaction per change.

use crate::args::Args;
use crate::password::{self, PasswordSpec};
use crate::store::{self, Secret, Version};
use crate::Op;
use base64::Engine as _;
use http::StatusCode;
use nimbus_keyring::Keyring;
use nimbus_protocol::AwsError;
use nimbus_svc_common::tags;
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const CURRENT: &str = "AWSCURRENT";
pub const PENDING: &str = "AWSPENDING";
pub const PREVIOUS: &str = "AWSPREVIOUS";
const MAX_VERSIONS: usize = 100;
const MAX_VALUE: usize = 65_536;
const DAY_MS: i64 = 86_400_000;

pub fn err(code: &'static str, msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, code, msg)
}
pub fn invalid_param(msg: impl Into<String>) -> AwsError {
    err("InvalidParameterException", msg)
}
pub fn invalid_request(msg: impl Into<String>) -> AwsError {
    err("InvalidRequestException", msg)
}
pub fn not_found() -> AwsError {
    err(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
    )
}
fn internal(e: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %e, "secretsmanager store failure");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServiceError",
        "An error occurred on the server side.",
    )
}
fn decryption_failure(e: nimbus_keyring::KeyringError) -> AwsError {
    tracing::error!(error = %e, "a secret value could not be decrypted");
    err(
        "DecryptionFailure",
        "Secrets Manager can't decrypt the protected secret text using the provided KMS key.",
    )
}
fn missing(name: &str) -> AwsError {
    invalid_param(format!("The parameter {name} is required."))
}
fn marked_for_deletion() -> AwsError {
    invalid_request(
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
}

fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A secret value in the clear, only while a request needs it.
#[derive(Clone)]
pub enum SecretValue {
    String(String),
    Binary(Vec<u8>),
}

impl SecretValue {
    fn bytes(&self) -> &[u8] {
        match self {
            SecretValue::String(s) => s.as_bytes(),
            SecretValue::Binary(b) => b,
        }
    }
    fn is_binary(&self) -> bool {
        matches!(self, SecretValue::Binary(_))
    }
    fn write(&self, out: &mut Map<String, Value>) {
        match self {
            SecretValue::String(s) => {
                out.insert("SecretString".into(), json!(s));
            }
            SecretValue::Binary(b) => {
                out.insert(
                    "SecretBinary".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(b)),
                );
            }
        }
    }
}

/// Counters for `/metrics` (never values).
#[derive(Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub rotations_started: AtomicU64,
    pub rotations_succeeded: AtomicU64,
    pub rotations_failed: AtomicU64,
    pub purged: AtomicU64,
}

pub struct Inner {
    pub conn: Connection,
    pub secrets: BTreeMap<String, Secret>,
    pub by_name: HashMap<String, String>,
    /// Rotations running now (secret ARN → token).
    pub rotating: HashMap<String, String>,
}

/// The Secrets Manager state.
pub struct Core {
    pub inner: Mutex<Inner>,
    pub keyring: Arc<Keyring>,
    pub region: String,
    pub account: String,
    pub counters: Counters,
    /// Wakes the schedule task when rotation schedules or deletions change.
    pub changed: Arc<tokio::sync::Notify>,
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[(*x as usize) % ALPHABET.len()] as char)
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

fn check_token(token: &str) -> Result<(), AwsError> {
    if !(32..=64).contains(&token.len()) {
        return Err(invalid_param(
            "ClientRequestToken must be between 32 and 64 characters long.",
        ));
    }
    Ok(())
}

fn check_description(d: Option<&str>) -> Result<(), AwsError> {
    if d.is_some_and(|d| d.chars().count() > 2048) {
        return Err(invalid_param(
            "Description must be at most 2048 characters.",
        ));
    }
    Ok(())
}

/// A customer `KmsKeyId` must name a usable key of Nimbus's KMS (AWS managed
/// `alias/aws/...` keys always exist).
fn check_kms(keyring: &Keyring, key: Option<&str>) -> Result<(), AwsError> {
    match key {
        Some(k) if !k.starts_with("alias/aws/") => keyring.check_kms_key(k).map_err(|why| {
            err(
                "EncryptionFailure",
                format!("Secrets Manager can't encrypt the protected secret text using the provided KMS key {k}: {why}"),
            )
        }),
        _ => Ok(()),
    }
}

fn check_tags(tags: &[(String, String)]) -> Result<(), AwsError> {
    tags::check(tags, true).map_err(tag_error)
}

fn tag_error(e: tags::TagError) -> AwsError {
    match e {
        tags::TagError::TooMany => invalid_param("A secret can have at most 50 tags."),
        e => invalid_param(e.to_string()),
    }
}

/// The value a request carries (`SecretString` or `SecretBinary`), if any.
fn value_of(a: &Args) -> Result<Option<SecretValue>, AwsError> {
    let s = a.str("SecretString")?;
    let b = a.str("SecretBinary")?;
    let v = match (s, b) {
        (Some(_), Some(_)) => {
            return Err(invalid_param(
                "You can't specify both a binary secret value and a string secret value in the same secret.",
            ))
        }
        (Some(s), None) => SecretValue::String(s.to_string()),
        (None, Some(b)) => SecretValue::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| err("SerializationException", "SecretBinary is not valid base64."))?,
        ),
        (None, None) => return Ok(None),
    };
    if v.bytes().len() > MAX_VALUE {
        return Err(invalid_param(format!(
            "The secret value exceeds the maximum size of {MAX_VALUE} bytes."
        )));
    }
    Ok(Some(v))
}

fn tags_json(t: &[(String, String)]) -> Value {
    tags::to_json(t, "Key", "Value")
}

/// The filters of `ListSecrets`/`BatchGetSecretValue`.
struct Filter {
    key: String,
    values: Vec<String>,
}

fn parse_filters(a: &Args) -> Result<Vec<Filter>, AwsError> {
    let Some(fs) = a.array("Filters")? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for f in fs {
        let key = f.get("Key").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            key,
            "description"
                | "name"
                | "tag-key"
                | "tag-value"
                | "primary-region"
                | "owning-service"
                | "all"
        ) {
            return Err(invalid_param(format!("Invalid filter key: {key}.")));
        }
        let values: Vec<String> = f
            .get("Values")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if values.is_empty() || values.len() > 10 {
            return Err(invalid_param("A filter must have between 1 and 10 values."));
        }
        out.push(Filter {
            key: key.to_string(),
            values,
        });
    }
    Ok(out)
}

/// Words of a name or description for the `all` filter: split at separators and
/// at lower→upper case changes.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn filter_matches(s: &Secret, region: &str, f: &Filter) -> bool {
    let one = |value: &str| -> bool {
        match f.key.as_str() {
            "name" => s.name.starts_with(value),
            "description" => s
                .description
                .as_deref()
                .is_some_and(|d| d.to_lowercase().starts_with(&value.to_lowercase())),
            "tag-key" => s.tags.iter().any(|(k, _)| k.starts_with(value)),
            "tag-value" => s.tags.iter().any(|(_, v)| v.starts_with(value)),
            "primary-region" => region.starts_with(value),
            "owning-service" => false,
            _ => {
                let v = value.to_lowercase();
                let mut texts = vec![s.name.clone()];
                texts.extend(s.description.clone());
                for (k, tv) in &s.tags {
                    texts.push(k.clone());
                    texts.push(tv.clone());
                }
                texts
                    .iter()
                    .flat_map(|t| words(t))
                    .any(|w| w.to_lowercase().starts_with(&v))
                    || texts.iter().any(|t| t.to_lowercase().starts_with(&v))
            }
        }
    };
    // Values are ORed; a `!` value negates.
    let (neg, pos): (Vec<&String>, Vec<&String>) =
        f.values.iter().partition(|v| v.starts_with('!'));
    let pos_ok = pos.is_empty() || pos.iter().any(|v| one(v));
    let neg_ok = neg.iter().all(|v| !one(&v[1..]));
    pos_ok && neg_ok
}

fn page<T: Clone>(
    items: &[T],
    a: &Args,
    max_default: i64,
    max_limit: i64,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let max = a.i64("MaxResults")?.unwrap_or(max_default);
    if !(1..=max_limit).contains(&max) {
        return Err(invalid_param(format!(
            "MaxResults must be between 1 and {max_limit}."
        )));
    }
    tags::page(items, a.str("NextToken")?, max as usize).map_err(|_| {
        err(
            "InvalidNextTokenException",
            "The NextToken value isn't valid.",
        )
    })
}

/// The function name (and qualifier) of a Lambda ARN or name.
pub fn lambda_target(arn: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() >= 7 && parts[0] == "arn" && parts[5] == "function" {
        (parts[6].to_string(), parts.get(7).map(|q| q.to_string()))
    } else {
        (arn.to_string(), None)
    }
}

/// The next rotation time after `from_ms` under `rules`, if they schedule one.
pub fn next_rotation(rules: &Value, from_ms: i64) -> Option<i64> {
    if let Some(d) = rules.get("AutomaticallyAfterDays").and_then(Value::as_i64) {
        return Some(from_ms + d * DAY_MS);
    }
    let expr = rules.get("ScheduleExpression").and_then(Value::as_str)?;
    let e = nimbus_schedule_expr::Expression::parse(expr).ok()?;
    e.next_after(from_ms, from_ms, chrono_tz::UTC)
}

fn validate_rules(rules: &Map<String, Value>) -> Result<Value, AwsError> {
    let days = rules.get("AutomaticallyAfterDays");
    let expr = rules.get("ScheduleExpression");
    if days.is_some() && expr.is_some() {
        return Err(invalid_param(
            "You can't specify both AutomaticallyAfterDays and ScheduleExpression.",
        ));
    }
    if let Some(d) = days {
        let d = d.as_i64().ok_or_else(|| {
            err(
                "SerializationException",
                "AutomaticallyAfterDays must be an integer.",
            )
        })?;
        if !(1..=1000).contains(&d) {
            return Err(invalid_param(
                "AutomaticallyAfterDays must be between 1 and 1000.",
            ));
        }
    }
    if let Some(e) = expr {
        let e = e.as_str().unwrap_or("");
        match nimbus_schedule_expr::Expression::parse(e) {
            Ok(nimbus_schedule_expr::Expression::Rate { period_ms }) => {
                if !(4 * 3_600_000..=1000 * DAY_MS).contains(&period_ms) {
                    return Err(invalid_param(
                        "The rotation schedule must be between 4 hours and 1000 days.",
                    ));
                }
            }
            Ok(_) => {}
            Err(_) => {
                return Err(invalid_param(format!(
                    "The ScheduleExpression {e} is not a valid rate() or cron() expression."
                )))
            }
        }
    }
    if let Some(d) = rules.get("Duration") {
        let ok = d
            .as_str()
            .and_then(|s| s.strip_suffix('h'))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=24).contains(&n));
        if !ok {
            return Err(invalid_param(
                "Duration must be between 1h and 24h, in the form Nh.",
            ));
        }
    }
    Ok(Value::Object(rules.clone()))
}

/// Check a resource policy; the validation errors, empty when it passes.
pub fn policy_errors(text: &str) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return vec![(
                "MALFORMED_POLICY".into(),
                "The policy document is not valid JSON.".into(),
            )]
        }
    };
    let Some(o) = v.as_object() else {
        return vec![(
            "MALFORMED_POLICY".into(),
            "The policy must be a JSON object.".into(),
        )];
    };
    if let Some(ver) = o.get("Version") {
        if !matches!(ver.as_str(), Some("2012-10-17" | "2008-10-17")) {
            errs.push((
                "MALFORMED_POLICY".into(),
                "Version must be 2012-10-17 or 2008-10-17.".into(),
            ));
        }
    }
    let stmts: Vec<&Value> = match o.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => {
            errs.push((
                "MALFORMED_POLICY".into(),
                "The policy has no Statement.".into(),
            ));
            return errs;
        }
    };
    for s in stmts {
        if !matches!(
            s.get("Effect").and_then(Value::as_str),
            Some("Allow" | "Deny")
        ) {
            errs.push((
                "MALFORMED_POLICY".into(),
                "Each statement needs an Effect of Allow or Deny.".into(),
            ));
        }
        if s.get("Principal").is_none() && s.get("NotPrincipal").is_none() {
            errs.push((
                "MALFORMED_POLICY".into(),
                "A resource policy statement needs a Principal.".into(),
            ));
        }
        if s.get("Action").is_none() && s.get("NotAction").is_none() {
            errs.push((
                "MALFORMED_POLICY".into(),
                "Each statement needs an Action.".into(),
            ));
        }
    }
    errs
}

/// Whether a policy grants access to everyone (`"Principal": "*"` on an Allow).
fn is_public(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let stmts: Vec<Value> = match v.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s) => vec![s.clone()],
        None => vec![],
    };
    stmts.iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && s.get("Condition").is_none()
            && match s.get("Principal") {
                Some(Value::String(p)) => p == "*",
                Some(Value::Object(o)) => o.get("AWS").is_some_and(|a| {
                    a == "*" || a.as_array().is_some_and(|x| x.iter().any(|y| y == "*"))
                }),
                _ => false,
            }
    })
}

impl Core {
    pub fn open(
        data_dir: &std::path::Path,
        keyring: Arc<Keyring>,
        region: String,
        account: String,
    ) -> Result<Self, String> {
        let conn = nimbus_store::open_migrated(&data_dir.join("secretsmanager.db"), &store::SCHEMA)
            .map_err(|e| e.to_string())?;
        let secrets = store::load(&conn).map_err(|e| e.to_string())?;
        let mut inner = Inner {
            conn,
            secrets: BTreeMap::new(),
            by_name: HashMap::new(),
            rotating: HashMap::new(),
        };
        for s in secrets {
            inner.by_name.insert(s.name.clone(), s.arn.clone());
            inner.secrets.insert(s.arn.clone(), s);
        }
        Ok(Self {
            inner: Mutex::new(inner),
            keyring,
            region,
            account,
            counters: Counters::default(),
            changed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-seal every value not under the keyring's current key.
    pub fn rewrap(&self, keyring: &Keyring) -> Result<u64, String> {
        let g = self.lock();
        let current = keyring.current_key_id();
        let rows = store::stale(&g.conn, &current).map_err(|e| e.to_string())?;
        let mut n = 0;
        let tx = g.conn.unchecked_transaction().map_err(|e| e.to_string())?;
        for (arn, vid, sealed) in rows {
            let binary = g
                .secrets
                .get(&arn)
                .and_then(|s| s.version(&vid))
                .is_some_and(|v| v.binary);
            let aad = store::aad(&arn, &vid, binary);
            let Some(new) = keyring.rewrap(&aad, &sealed).map_err(|e| e.to_string())? else {
                continue;
            };
            let kid = nimbus_keyring::key_id_of(&new)
                .unwrap_or_default()
                .to_string();
            store::put_value(&tx, &arn, &vid, &kid, &new).map_err(|e| e.to_string())?;
            n += 1;
        }
        tx.commit().map_err(|e| e.to_string())?;
        if n > 0 {
            tracing::info!(reencrypted = n, key_id = %current, "secretsmanager values re-encrypted");
        }
        Ok(n)
    }

    /// Remove the secrets whose recovery window has passed.
    pub fn purge_due(&self, now: i64) -> Result<(), AwsError> {
        let mut g = self.lock();
        let due: Vec<String> = g
            .secrets
            .values()
            .filter(|s| s.delete_at_ms.is_some_and(|t| t <= now))
            .map(|s| s.arn.clone())
            .collect();
        for arn in due {
            store::delete(&g.conn, &arn).map_err(internal)?;
            if let Some(s) = g.secrets.remove(&arn) {
                g.by_name.remove(&s.name);
                tracing::info!(secret = %s.arn, "secret deleted at the end of its recovery window");
            }
            self.counters.purged.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The ARN of a secret by full ARN, name or partial ARN (without the suffix).
    pub fn resolve(g: &Inner, id: &str) -> Option<String> {
        if g.secrets.contains_key(id) {
            return Some(id.to_string());
        }
        if let Some(arn) = g.by_name.get(id) {
            return Some(arn.clone());
        }
        if id.starts_with("arn:") {
            return g
                .secrets
                .range(id.to_string()..)
                .take_while(|(k, _)| k.starts_with(id))
                .find(|(k, _)| k.len() == id.len() + 7 && k.as_bytes()[id.len()] == b'-')
                .map(|(k, _)| k.clone());
        }
        None
    }

    fn secret_id(a: &Args) -> Result<&str, AwsError> {
        let id = a.req_str("SecretId", missing)?;
        if id.is_empty() || id.len() > 2048 {
            return Err(invalid_param(
                "SecretId must be between 1 and 2048 characters.",
            ));
        }
        Ok(id)
    }

    fn find<'g>(g: &'g Inner, id: &str) -> Result<&'g Secret, AwsError> {
        let arn = Self::resolve(g, id).ok_or_else(not_found)?;
        g.secrets.get(&arn).ok_or_else(not_found)
    }

    fn seal(&self, arn: &str, vid: &str, v: &SecretValue) -> Result<Vec<u8>, AwsError> {
        self.keyring
            .seal(&store::aad(arn, vid, v.is_binary()), v.bytes())
            .map_err(|e| {
                tracing::error!(error = %e, "a secret value could not be encrypted");
                err(
                    "EncryptionFailure",
                    "Secrets Manager can't encrypt the protected secret text.",
                )
            })
    }

    /// Decrypt one version's value.
    pub fn value(&self, g: &Inner, s: &Secret, v: &Version) -> Result<SecretValue, AwsError> {
        let sealed = store::get_value(&g.conn, &s.arn, &v.id)
            .map_err(internal)?
            .ok_or_else(|| internal("a version has no stored value"))?;
        let plain = self
            .keyring
            .open_sealed(&store::aad(&s.arn, &v.id, v.binary), &sealed)
            .map_err(decryption_failure)?;
        if v.binary {
            Ok(SecretValue::Binary(plain))
        } else {
            String::from_utf8(plain)
                .map(SecretValue::String)
                .map_err(|_| internal("a string secret is not UTF-8"))
        }
    }

    /// Add a version (sealed) with `stages`, moving those labels off other
    /// versions (AWSCURRENT's old holder becomes AWSPREVIOUS). Writes `s` and the value.
    fn add_version(
        &self,
        conn: &Connection,
        s: &mut Secret,
        vid: &str,
        value: &SecretValue,
        stages: &[String],
        now: i64,
    ) -> Result<(), AwsError> {
        let sealed = self.seal(&s.arn, vid, value)?;
        let kid = nimbus_keyring::key_id_of(&sealed)
            .unwrap_or_default()
            .to_string();
        s.versions.push(Version {
            id: vid.to_string(),
            created_ms: now,
            stages: vec![],
            binary: value.is_binary(),
            last_accessed_ms: None,
            has_value: true,
        });
        for st in stages {
            attach(s, vid, st);
        }
        s.last_changed_ms = now;
        // AWS keeps at most 100 versions: the oldest unlabelled ones go.
        let mut dropped = Vec::new();
        while s.versions.len() > MAX_VERSIONS {
            match s.versions.iter().position(|v| v.stages.is_empty()) {
                Some(i) => dropped.push(s.versions.remove(i).id),
                None => break,
            }
        }
        let tx = conn.unchecked_transaction().map_err(internal)?;
        store::put_value(&tx, &s.arn, vid, &kid, &sealed).map_err(internal)?;
        for d in dropped {
            store::delete_version(&tx, &s.arn, &d).map_err(internal)?;
        }
        store::save(&tx, s).map_err(internal)?;
        tx.commit().map_err(internal)?;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Handle every operation but `RotateSecret` (which invokes functions).
    pub fn handle(&self, op: Op, a: &Args, now: i64) -> Result<Value, AwsError> {
        self.purge_due(now)?;
        match op {
            Op::CreateSecret => self.create(a, now),
            Op::DescribeSecret => self.describe(a),
            Op::ListSecrets => self.list(a),
            Op::GetSecretValue => self.get_value(a, now),
            Op::BatchGetSecretValue => self.batch_get(a, now),
            Op::PutSecretValue => self.put_value(a, now),
            Op::UpdateSecret => self.update(a, now),
            Op::DeleteSecret => self.delete(a, now),
            Op::RestoreSecret => self.restore(a, now),
            Op::UpdateSecretVersionStage => self.update_stage(a, now),
            Op::ListSecretVersionIds => self.list_versions(a),
            Op::TagResource => self.tag(a, now),
            Op::UntagResource => self.untag(a, now),
            Op::PutResourcePolicy => self.put_policy(a, now),
            Op::GetResourcePolicy => self.get_policy(a),
            Op::DeleteResourcePolicy => self.delete_policy(a, now),
            Op::ValidateResourcePolicy => self.validate_policy(a),
            Op::GetRandomPassword => self.random_password(a),
            Op::CancelRotateSecret => self.cancel_rotation(a, now),
            _ => Err(AwsError::not_implemented("secretsmanager", op.name())),
        }
    }

    fn create(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let name = a.req_str("Name", missing)?;
        if !valid_name(name) {
            return Err(invalid_param(
                "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
            ));
        }
        let description = a.str("Description")?;
        check_description(description)?;
        let kms = a.str("KmsKeyId")?;
        check_kms(&self.keyring, kms)?;
        let value = value_of(a)?;
        let tags = a.tags("Tags")?.unwrap_or_default();
        check_tags(&tags)?;
        if tags.len() > tags::MAX_TAGS {
            return Err(invalid_param("A secret can have at most 50 tags."));
        }
        if a.array("AddReplicaRegions")?.is_some_and(|r| !r.is_empty()) {
            return Err(invalid_request(
                "Nimbus serves one region: AddReplicaRegions is not supported.",
            ));
        }
        let token = a.str("ClientRequestToken")?.map(str::to_string);
        if let Some(t) = &token {
            check_token(t)?;
        }
        let mut g = self.lock();
        if let Some(arn) = g.by_name.get(name).cloned() {
            let s = &g.secrets[&arn];
            if s.deleted_ms.is_some() {
                return Err(invalid_request(
                    "You can't create this secret because a secret with this name is already scheduled for deletion.",
                ));
            }
            // The same request again (same token, same value) is answered again.
            if let (Some(t), Some(v)) = (&token, &value) {
                if let Some(ver) = s.version(t).filter(|v| v.has_value) {
                    let existing = self.value(&g, s, ver)?;
                    if existing.bytes() == v.bytes() && existing.is_binary() == v.is_binary() {
                        return Ok(json!({"ARN": s.arn, "Name": s.name, "VersionId": t}));
                    }
                }
            }
            return Err(err(
                "ResourceExistsException",
                format!("The operation failed because the secret {name} already exists."),
            ));
        }
        let arn = format!(
            "arn:aws:secretsmanager:{}:{}:secret:{name}-{}",
            self.region,
            self.account,
            random_suffix()
        );
        let mut s = Secret {
            arn: arn.clone(),
            name: name.to_string(),
            description: description.map(str::to_string),
            kms_key_id: kms.map(str::to_string),
            created_ms: now,
            last_changed_ms: now,
            tags,
            ..Default::default()
        };
        let mut out = json!({"ARN": arn, "Name": name});
        let g = &mut *g;
        if let Some(v) = value {
            let vid = token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            self.add_version(&g.conn, &mut s, &vid, &v, &[CURRENT.to_string()], now)?;
            out["VersionId"] = json!(vid);
        } else {
            store::save(&g.conn, &s).map_err(internal)?;
        }
        tracing::info!(secret = %arn, "secret created");
        g.by_name.insert(s.name.clone(), arn.clone());
        g.secrets.insert(arn, s);
        Ok(out)
    }

    fn describe_json(&self, s: &Secret, versions_key: &str) -> Value {
        let mut o = Map::new();
        o.insert("ARN".into(), json!(s.arn));
        o.insert("Name".into(), json!(s.name));
        if let Some(d) = &s.description {
            o.insert("Description".into(), json!(d));
        }
        if let Some(k) = &s.kms_key_id {
            o.insert("KmsKeyId".into(), json!(k));
        }
        o.insert("RotationEnabled".into(), json!(s.rotation_enabled));
        if let Some(l) = &s.rotation_lambda {
            o.insert("RotationLambdaARN".into(), json!(l));
        }
        if let Some(r) = &s.rotation_rules {
            o.insert("RotationRules".into(), r.clone());
        }
        if let Some(t) = s.last_rotated_ms {
            o.insert("LastRotatedDate".into(), secs(t));
        }
        if s.rotation_enabled {
            if let Some(t) = s.next_rotation_ms {
                o.insert("NextRotationDate".into(), secs(t));
            }
        }
        o.insert("LastChangedDate".into(), secs(s.last_changed_ms));
        if let Some(t) = s.last_accessed_ms {
            o.insert("LastAccessedDate".into(), secs(t));
        }
        if let Some(t) = s.deleted_ms {
            o.insert("DeletedDate".into(), secs(t));
        }
        if !s.tags.is_empty() {
            o.insert("Tags".into(), tags_json(&s.tags));
        }
        let stages: Map<String, Value> = s
            .versions
            .iter()
            .filter(|v| !v.stages.is_empty())
            .map(|v| (v.id.clone(), json!(v.stages)))
            .collect();
        if !stages.is_empty() {
            o.insert(versions_key.into(), Value::Object(stages));
        }
        o.insert("CreatedDate".into(), secs(s.created_ms));
        o.insert("PrimaryRegion".into(), json!(self.region));
        Value::Object(o)
    }

    /// `DescribeSecret`'s answer for a secret, for the SSM reference bridge too.
    pub fn describe_secret(&self, id: &str) -> Result<Value, AwsError> {
        let g = self.lock();
        let s = Self::find(&g, id)?;
        Ok(self.describe_json(s, "VersionIdsToStages"))
    }

    fn describe(&self, a: &Args) -> Result<Value, AwsError> {
        self.describe_secret(Self::secret_id(a)?)
    }

    fn matching<'g>(&self, g: &'g Inner, filters: &[Filter], deleted: bool) -> Vec<&'g Secret> {
        let mut v: Vec<&Secret> = g
            .secrets
            .values()
            .filter(|s| deleted || s.deleted_ms.is_none())
            .filter(|s| filters.iter().all(|f| filter_matches(s, &self.region, f)))
            .collect();
        v.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        v
    }

    fn list(&self, a: &Args) -> Result<Value, AwsError> {
        let filters = parse_filters(a)?;
        let deleted = a.bool("IncludePlannedDeletion")?.unwrap_or(false);
        let order = a.str("SortOrder")?.unwrap_or("asc");
        if !matches!(order, "asc" | "desc") {
            return Err(invalid_param("SortOrder must be asc or desc."));
        }
        let g = self.lock();
        let mut all = self.matching(&g, &filters, deleted);
        if order == "desc" {
            all.reverse();
        }
        let (items, next) = page(&all, a, 100, 100)?;
        let list: Vec<Value> = items
            .iter()
            .map(|s| self.describe_json(s, "SecretVersionsToStages"))
            .collect();
        let mut out = json!({"SecretList": list});
        if let Some(n) = next {
            out["NextToken"] = json!(n);
        }
        Ok(out)
    }

    /// The value of a secret at a version id and/or stage (AWSCURRENT by default),
    /// recording the access. For `GetSecretValue` and the SSM bridge.
    pub fn read_value(
        &self,
        id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
        now: i64,
    ) -> Result<(Value, SecretValue), AwsError> {
        let mut g = self.lock();
        let arn = Self::resolve(&g, id).ok_or_else(not_found)?;
        let s = &g.secrets[&arn];
        if s.deleted_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let v = match (version_id, stage) {
            (Some(vid), st) => {
                let v = s.version(vid).ok_or_else(|| {
                    err(
                        "ResourceNotFoundException",
                        format!("Secrets Manager can't find the specified secret value for VersionId: {vid}"),
                    )
                })?;
                if let Some(st) = st {
                    if !v.stages.iter().any(|x| x == st) {
                        return Err(invalid_param(format!(
                            "The VersionId {vid} doesn't have the staging label {st}."
                        )));
                    }
                }
                v
            }
            (None, st) => {
                let st = st.unwrap_or(CURRENT);
                s.staged(st).ok_or_else(|| {
                    err(
                        "ResourceNotFoundException",
                        format!("Secrets Manager can't find the specified secret value for staging label: {st}"),
                    )
                })?
            }
        };
        if !v.has_value {
            return Err(err(
                "ResourceNotFoundException",
                match (version_id, stage) {
                    (Some(vid), _) => format!("Secrets Manager can't find the specified secret value for VersionId: {vid}"),
                    (None, st) => format!("Secrets Manager can't find the specified secret value for staging label: {}", st.unwrap_or(CURRENT)),
                },
            ));
        }
        let value = self.value(&g, s, v)?;
        let meta = json!({
            "ARN": s.arn,
            "Name": s.name,
            "VersionId": v.id,
            "VersionStages": v.stages,
            "CreatedDate": secs(v.created_ms),
        });
        // LastAccessedDate is a date (AWS truncates to the day): written once a day.
        let day = now - now.rem_euclid(DAY_MS);
        let vid = v.id.clone();
        if s.last_accessed_ms != Some(day) {
            let g = &mut *g;
            if let Some(s) = g.secrets.get_mut(&arn) {
                s.last_accessed_ms = Some(day);
                if let Some(v) = s.versions.iter_mut().find(|v| v.id == vid) {
                    v.last_accessed_ms = Some(day);
                }
                store::save(&g.conn, s).map_err(internal)?;
            }
        }
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        Ok((meta, value))
    }

    fn get_value(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let (mut meta, value) =
            self.read_value(id, a.str("VersionId")?, a.str("VersionStage")?, now)?;
        if let Value::Object(o) = &mut meta {
            value.write(o);
        }
        Ok(meta)
    }

    fn batch_get(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let ids = a.strings("SecretIdList")?;
        let has_filters = a.value("Filters").is_some();
        let mut values = Vec::new();
        let mut errors = Vec::new();
        let mut next = None;
        match (ids, has_filters) {
            (Some(_), true) | (None, false) => {
                return Err(invalid_param(
                    "Either SecretIdList or Filters must be provided, not both.",
                ))
            }
            (Some(ids), false) => {
                if ids.is_empty() || ids.len() > 20 {
                    return Err(invalid_param(
                        "SecretIdList must have between 1 and 20 items.",
                    ));
                }
                if a.value("MaxResults").is_some() {
                    return Err(invalid_param("MaxResults can only be used with Filters."));
                }
                for id in ids {
                    match self.read_value(&id, None, None, now) {
                        Ok((mut meta, v)) => {
                            if let Value::Object(o) = &mut meta {
                                v.write(o);
                            }
                            values.push(meta);
                        }
                        Err(e) => errors.push(json!({
                            "SecretId": id,
                            "ErrorCode": e.code,
                            "Message": e.message,
                        })),
                    }
                }
            }
            (None, true) => {
                let filters = parse_filters(a)?;
                let arns: Vec<String> = {
                    let g = self.lock();
                    self.matching(&g, &filters, false)
                        .iter()
                        .map(|s| s.arn.clone())
                        .collect()
                };
                let (items, n) = page(&arns, a, 20, 20)?;
                next = n;
                for arn in items {
                    match self.read_value(&arn, None, None, now) {
                        Ok((mut meta, v)) => {
                            if let Value::Object(o) = &mut meta {
                                v.write(o);
                            }
                            values.push(meta);
                        }
                        Err(e) => errors.push(json!({
                            "SecretId": arn,
                            "ErrorCode": e.code,
                            "Message": e.message,
                        })),
                    }
                }
            }
        }
        let mut out = json!({"SecretValues": values, "Errors": errors});
        if let Some(n) = next {
            out["NextToken"] = json!(n);
        }
        Ok(out)
    }

    /// `PutSecretValue` (and the value part of `UpdateSecret`).
    fn put_version(
        &self,
        id: &str,
        token: Option<&str>,
        value: SecretValue,
        stages: Option<Vec<String>>,
        now: i64,
    ) -> Result<(String, String, String, Vec<String>), AwsError> {
        if let Some(t) = token {
            check_token(t)?;
        }
        let stages = stages.unwrap_or_else(|| vec![CURRENT.to_string()]);
        if stages.len() > 20 || stages.iter().any(|s| s.is_empty() || s.len() > 256) {
            return Err(invalid_param(
                "VersionStages must have 1 to 20 labels of 1 to 256 characters.",
            ));
        }
        let mut g = self.lock();
        let arn = Self::resolve(&g, id).ok_or_else(not_found)?;
        let s = &g.secrets[&arn];
        if s.deleted_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let vid = token
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if s.version(&vid).is_some_and(|v| !v.has_value) {
            // The version a rotation labelled AWSPENDING gets its value.
            let g = &mut *g;
            let mut s = g.secrets[&arn].clone();
            let sealed = self.seal(&s.arn, &vid, &value)?;
            let kid = nimbus_keyring::key_id_of(&sealed)
                .unwrap_or_default()
                .to_string();
            if let Some(v) = s.versions.iter_mut().find(|v| v.id == vid) {
                v.has_value = true;
                v.binary = value.is_binary();
                v.created_ms = now;
            }
            for st in &stages {
                attach(&mut s, &vid, st);
            }
            s.last_changed_ms = now;
            let tx = g.conn.unchecked_transaction().map_err(internal)?;
            store::put_value(&tx, &s.arn, &vid, &kid, &sealed).map_err(internal)?;
            store::save(&tx, &s).map_err(internal)?;
            tx.commit().map_err(internal)?;
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
            let out = (
                s.arn.clone(),
                s.name.clone(),
                vid.clone(),
                s.version(&vid)
                    .map(|v| v.stages.clone())
                    .unwrap_or_default(),
            );
            g.secrets.insert(arn, s);
            return Ok(out);
        }
        if let Some(v) = s.version(&vid) {
            let existing = self.value(&g, s, v)?;
            if existing.bytes() == value.bytes() && existing.is_binary() == value.is_binary() {
                // The same request again: nothing changes.
                return Ok((s.arn.clone(), s.name.clone(), vid, v.stages.clone()));
            }
            return Err(err(
                "ResourceExistsException",
                "You can't modify an existing version, you can only create a new version.",
            ));
        }
        let g = &mut *g;
        let mut s = g.secrets[&arn].clone();
        self.add_version(&g.conn, &mut s, &vid, &value, &stages, now)?;
        let out = (
            s.arn.clone(),
            s.name.clone(),
            vid.clone(),
            s.version(&vid)
                .map(|v| v.stages.clone())
                .unwrap_or_default(),
        );
        g.secrets.insert(arn, s);
        Ok(out)
    }

    fn put_value(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let value = value_of(a)?.ok_or_else(|| {
            invalid_param("You must provide either SecretString or SecretBinary.")
        })?;
        let stages = a.strings("VersionStages")?;
        let (arn, name, vid, stages) =
            self.put_version(id, a.str("ClientRequestToken")?, value, stages, now)?;
        Ok(json!({"ARN": arn, "Name": name, "VersionId": vid, "VersionStages": stages}))
    }

    /// Apply `f` to a secret (not deleted unless `deleted_ok`) and write it.
    fn modify(
        &self,
        id: &str,
        deleted_ok: bool,
        f: impl FnOnce(&mut Secret) -> Result<(), AwsError>,
    ) -> Result<Secret, AwsError> {
        let mut g = self.lock();
        let arn = Self::resolve(&g, id).ok_or_else(not_found)?;
        let mut s = g.secrets[&arn].clone();
        if s.deleted_ms.is_some() && !deleted_ok {
            return Err(marked_for_deletion());
        }
        f(&mut s)?;
        store::save(&g.conn, &s).map_err(internal)?;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        g.secrets.insert(arn, s.clone());
        Ok(s)
    }

    fn update(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let description = a.str("Description")?;
        check_description(description)?;
        let kms = a.str("KmsKeyId")?;
        check_kms(&self.keyring, kms)?;
        let value = value_of(a)?;
        let token = a.str("ClientRequestToken")?;
        let s = if description.is_some() || kms.is_some() {
            self.modify(id, false, |s| {
                if let Some(d) = description {
                    s.description = Some(d.to_string());
                }
                if let Some(k) = kms {
                    s.kms_key_id = Some(k.to_string());
                }
                s.last_changed_ms = now;
                Ok(())
            })?
        } else {
            let g = self.lock();
            let s = Self::find(&g, id)?;
            if s.deleted_ms.is_some() {
                return Err(marked_for_deletion());
            }
            s.clone()
        };
        let mut out = json!({"ARN": s.arn, "Name": s.name});
        if let Some(v) = value {
            let (_, _, vid, _) = self.put_version(&s.arn, token, v, None, now)?;
            out["VersionId"] = json!(vid);
        }
        Ok(out)
    }

    fn delete(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let force = a.bool("ForceDeleteWithoutRecovery")?.unwrap_or(false);
        let window = a.i64("RecoveryWindowInDays")?;
        if force && window.is_some() {
            return Err(invalid_param(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
        let window = window.unwrap_or(30);
        if !(7..=30).contains(&window) {
            return Err(invalid_param(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
            ));
        }
        let mut g = self.lock();
        let arn = Self::resolve(&g, id).ok_or_else(not_found)?;
        if force {
            store::delete(&g.conn, &arn).map_err(internal)?;
            let s = g.secrets.remove(&arn).ok_or_else(not_found)?;
            g.by_name.remove(&s.name);
            tracing::info!(secret = %arn, "secret deleted without recovery");
            self.changed.notify_one();
            return Ok(json!({"ARN": s.arn, "Name": s.name, "DeletionDate": secs(now)}));
        }
        let mut s = g.secrets[&arn].clone();
        if s.deleted_ms.is_some() {
            return Err(invalid_request(
                "You can't perform this operation on the secret because it was already scheduled for deletion.",
            ));
        }
        s.deleted_ms = Some(now);
        s.delete_at_ms = Some(now + window * DAY_MS);
        store::save(&g.conn, &s).map_err(internal)?;
        let out =
            json!({"ARN": s.arn, "Name": s.name, "DeletionDate": secs(now + window * DAY_MS)});
        g.secrets.insert(arn, s);
        self.changed.notify_one();
        Ok(out)
    }

    fn restore(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let s = self.modify(Self::secret_id(a)?, true, |s| {
            s.deleted_ms = None;
            s.delete_at_ms = None;
            s.last_changed_ms = now;
            Ok(())
        })?;
        self.changed.notify_one();
        Ok(json!({"ARN": s.arn, "Name": s.name}))
    }

    fn update_stage(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let stage = a.req_str("VersionStage", missing)?.to_string();
        if stage.is_empty() || stage.len() > 256 {
            return Err(invalid_param("VersionStage must be 1 to 256 characters."));
        }
        let remove = a.str("RemoveFromVersionId")?;
        let to = a.str("MoveToVersionId")?;
        let s = self.modify(id, false, |s| {
            for v in [remove, to].into_iter().flatten() {
                if s.version(v).is_none() {
                    return Err(invalid_param(format!(
                        "The version {v} doesn't exist in the secret."
                    )));
                }
            }
            let holder = s.staged(&stage).map(|v| v.id.clone());
            if let Some(h) = &holder {
                if Some(h.as_str()) != remove && Some(h.as_str()) != to {
                    return Err(invalid_param(format!(
                        "The staging label {stage} is currently attached to version {h}. You must specify it as RemoveFromVersionId to move it."
                    )));
                }
            }
            if let Some(r) = remove {
                if holder.as_deref() != Some(r) {
                    return Err(invalid_param(format!(
                        "The staging label {stage} isn't attached to version {r}."
                    )));
                }
            }
            match to {
                Some(t) => attach(s, t, &stage),
                None => {
                    if stage == CURRENT {
                        return Err(invalid_param(
                            "You can't remove the AWSCURRENT staging label without moving it to another version.",
                        ));
                    }
                    if let Some(r) = remove {
                        if let Some(v) = s.versions.iter_mut().find(|v| v.id == r) {
                            v.stages.retain(|x| *x != stage);
                        }
                    }
                }
            }
            s.last_changed_ms = now;
            Ok(())
        })?;
        Ok(json!({"ARN": s.arn, "Name": s.name}))
    }

    fn list_versions(&self, a: &Args) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let deprecated = a.bool("IncludeDeprecated")?.unwrap_or(false);
        let g = self.lock();
        let s = Self::find(&g, id)?;
        let mut vs: Vec<&Version> = s
            .versions
            .iter()
            .filter(|v| deprecated || !v.stages.is_empty())
            .collect();
        vs.reverse();
        let (items, next) = page(&vs, a, 100, 100)?;
        let list: Vec<Value> = items
            .iter()
            .map(|v| {
                let mut o = json!({
                    "VersionId": v.id,
                    "CreatedDate": secs(v.created_ms),
                    "KmsKeyIds": [s.kms_key_id.as_deref().unwrap_or("DefaultEncryptionKey")],
                });
                if !v.stages.is_empty() {
                    o["VersionStages"] = json!(v.stages);
                }
                if let Some(t) = v.last_accessed_ms {
                    o["LastAccessedDate"] = secs(t);
                }
                o
            })
            .collect();
        let mut out = json!({"Versions": list, "ARN": s.arn, "Name": s.name});
        if let Some(n) = next {
            out["NextToken"] = json!(n);
        }
        Ok(out)
    }

    fn tag(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let tags = a.tags("Tags")?.ok_or_else(|| missing("Tags"))?;
        check_tags(&tags)?;
        self.modify(id, true, |s| {
            tags::merge(&mut s.tags, tags).map_err(tag_error)?;
            s.last_changed_ms = now;
            Ok(())
        })?;
        Ok(json!({}))
    }

    fn untag(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let keys = a.strings("TagKeys")?.ok_or_else(|| missing("TagKeys"))?;
        self.modify(id, true, |s| {
            tags::remove(&mut s.tags, &keys);
            s.last_changed_ms = now;
            Ok(())
        })?;
        Ok(json!({}))
    }

    fn put_policy(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let id = Self::secret_id(a)?;
        let policy = a.req_str("ResourcePolicy", missing)?;
        if policy.is_empty() || policy.len() > 20_480 {
            return Err(invalid_param(
                "ResourcePolicy must be 1 to 20480 characters.",
            ));
        }
        let errs = policy_errors(policy);
        if let Some((_, m)) = errs.first() {
            return Err(err("MalformedPolicyDocumentException", m.clone()));
        }
        if a.bool("BlockPublicPolicy")?.unwrap_or(true) && is_public(policy) {
            return Err(err(
                "PublicPolicyException",
                "The BlockPublicPolicy parameter is set to true, and the resource policy did not prevent broad access to the secret.",
            ));
        }
        let s = self.modify(id, false, |s| {
            s.policy = Some(policy.to_string());
            s.last_changed_ms = now;
            Ok(())
        })?;
        Ok(json!({"ARN": s.arn, "Name": s.name}))
    }

    fn get_policy(&self, a: &Args) -> Result<Value, AwsError> {
        let g = self.lock();
        let s = Self::find(&g, Self::secret_id(a)?)?;
        let mut out = json!({"ARN": s.arn, "Name": s.name});
        if let Some(p) = &s.policy {
            out["ResourcePolicy"] = json!(p);
        }
        Ok(out)
    }

    fn delete_policy(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let s = self.modify(Self::secret_id(a)?, false, |s| {
            s.policy = None;
            s.last_changed_ms = now;
            Ok(())
        })?;
        Ok(json!({"ARN": s.arn, "Name": s.name}))
    }

    fn validate_policy(&self, a: &Args) -> Result<Value, AwsError> {
        let policy = a.req_str("ResourcePolicy", missing)?;
        if let Some(id) = a.str("SecretId")? {
            let g = self.lock();
            Self::find(&g, id)?;
        }
        let errs = policy_errors(policy);
        Ok(json!({
            "PolicyValidationPassed": errs.is_empty(),
            "ValidationErrors": errs.iter().map(|(c, m)| json!({"CheckName": c, "ErrorMessage": m})).collect::<Vec<_>>(),
        }))
    }

    fn random_password(&self, a: &Args) -> Result<Value, AwsError> {
        let spec = PasswordSpec {
            length: a.i64("PasswordLength")?.unwrap_or(32),
            exclude_characters: a.str("ExcludeCharacters")?.unwrap_or("").to_string(),
            exclude_numbers: a.bool("ExcludeNumbers")?.unwrap_or(false),
            exclude_punctuation: a.bool("ExcludePunctuation")?.unwrap_or(false),
            exclude_uppercase: a.bool("ExcludeUppercase")?.unwrap_or(false),
            exclude_lowercase: a.bool("ExcludeLowercase")?.unwrap_or(false),
            include_space: a.bool("IncludeSpace")?.unwrap_or(false),
            require_each_included_type: a.bool("RequireEachIncludedType")?.unwrap_or(true),
        };
        Ok(json!({"RandomPassword": password::generate(&spec)?}))
    }

    fn cancel_rotation(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let s = self.modify(Self::secret_id(a)?, false, |s| {
            if !s.rotation_enabled && s.staged(PENDING).is_none() {
                return Err(invalid_request(
                    "Secrets Manager can't cancel rotation because rotation isn't enabled for this secret.",
                ));
            }
            s.rotation_enabled = false;
            s.next_rotation_ms = None;
            s.last_changed_ms = now;
            Ok(())
        })?;
        self.changed.notify_one();
        let mut out = json!({"ARN": s.arn, "Name": s.name});
        if let Some(p) = s
            .staged(PENDING)
            .filter(|v| !v.stages.iter().any(|x| x == CURRENT))
        {
            out["VersionId"] = json!(p.id);
        }
        Ok(out)
    }

    /// The first half of `RotateSecret`: check and record the rotation
    /// configuration; returns the rotation to run now (ARN, name, lambda, token), if any.
    pub fn prepare_rotation(
        &self,
        a: &Args,
        now: i64,
        lambda_exists: impl Fn(&str) -> bool,
    ) -> Result<(Value, Option<Rotation>), AwsError> {
        self.purge_due(now)?;
        let id = Self::secret_id(a)?;
        let token = a.str("ClientRequestToken")?.map(str::to_string);
        if let Some(t) = &token {
            check_token(t)?;
        }
        let lambda = a.str("RotationLambdaARN")?.map(str::to_string);
        let rules = match a.object("RotationRules")? {
            Some(r) => Some(validate_rules(r)?),
            None => None,
        };
        let immediately = a.bool("RotateImmediately")?.unwrap_or(true);
        let mut g = self.lock();
        let arn = Self::resolve(&g, id).ok_or_else(not_found)?;
        let mut s = g.secrets[&arn].clone();
        if s.deleted_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let lambda = lambda
            .or_else(|| s.rotation_lambda.clone())
            .ok_or_else(|| {
                invalid_request("No Lambda rotation function ARN is associated with this secret.")
            })?;
        let (fname, _) = lambda_target(&lambda);
        if !lambda_exists(&fname) {
            return Err(invalid_request(format!(
                "Secrets Manager cannot invoke the specified Lambda function {lambda}. Ensure the function exists."
            )));
        }
        if g.rotating.contains_key(&arn) {
            return Err(invalid_request(
                "A previous rotation isn't complete. That rotation will be reattempted.",
            ));
        }
        // A version left AWSPENDING by a failed rotation: AWS refuses a new one
        // with another token.
        if let Some(p) = s.staged(PENDING) {
            let is_current = p.stages.iter().any(|x| x == CURRENT);
            if !is_current && token.as_deref().is_some_and(|t| t != p.id) {
                return Err(invalid_request(
                    "A previous rotation isn't complete. That rotation will be reattempted.",
                ));
            }
        }
        let token = token
            .or_else(|| {
                s.staged(PENDING)
                    .filter(|p| !p.stages.iter().any(|x| x == CURRENT))
                    .map(|p| p.id.clone())
            })
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if immediately {
            ensure_pending(&mut s, &token, now);
        }
        s.rotation_lambda = Some(lambda.clone());
        s.rotation_enabled = true;
        if let Some(r) = rules {
            s.rotation_rules = Some(r);
        }
        let base = s.last_rotated_ms.unwrap_or(now);
        s.next_rotation_ms = s
            .rotation_rules
            .as_ref()
            .and_then(|r| next_rotation(r, base.max(now.min(base))));
        if s.next_rotation_ms.is_some_and(|t| t < now) {
            s.next_rotation_ms = s
                .rotation_rules
                .as_ref()
                .and_then(|r| next_rotation(r, now));
        }
        s.last_changed_ms = now;
        store::save(&g.conn, &s).map_err(internal)?;
        let out = json!({"ARN": s.arn, "Name": s.name, "VersionId": token});
        let run = immediately.then(|| Rotation {
            arn: s.arn.clone(),
            lambda: lambda.clone(),
            token: token.clone(),
        });
        if run.is_some() {
            g.rotating.insert(s.arn.clone(), token);
        }
        g.secrets.insert(arn, s);
        self.changed.notify_one();
        Ok((out, run))
    }

    /// Record the end of a rotation.
    pub fn finish_rotation(&self, r: &Rotation, ok: bool, now: i64) {
        let mut g = self.lock();
        g.rotating.remove(&r.arn);
        let g = &mut *g;
        let Some(s) = g.secrets.get_mut(&r.arn) else {
            return;
        };
        let rotated = ok
            && s.version(&r.token)
                .is_some_and(|v| v.stages.iter().any(|x| x == CURRENT));
        if rotated {
            s.last_rotated_ms = Some(now);
            self.counters
                .rotations_succeeded
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(secret = %r.arn, version = %r.token, "secret rotated");
        } else {
            self.counters
                .rotations_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(secret = %r.arn, version = %r.token, "secret rotation failed; AWSPENDING is left for the next attempt");
        }
        s.next_rotation_ms = s
            .rotation_rules
            .as_ref()
            .and_then(|x| next_rotation(x, now));
        if let Err(e) = store::save(&g.conn, s) {
            tracing::error!(error = %e, "secretsmanager store failure");
        }
        self.changed.notify_one();
    }

    /// Secrets whose scheduled rotation is due, and the earliest future due time
    /// (rotation or end of a recovery window).
    pub fn due(&self, now: i64) -> (Vec<Rotation>, Option<i64>) {
        let mut g = self.lock();
        let mut due = Vec::new();
        let mut next: Option<i64> = None;
        let mut bump = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        let mut start = Vec::new();
        for s in g.secrets.values() {
            if let Some(t) = s.delete_at_ms {
                bump(t);
            }
            if !s.rotation_enabled || s.deleted_ms.is_some() {
                continue;
            }
            let (Some(t), Some(l)) = (s.next_rotation_ms, &s.rotation_lambda) else {
                continue;
            };
            if t > now {
                bump(t);
                continue;
            }
            if g.rotating.contains_key(&s.arn) {
                continue;
            }
            let token = s
                .staged(PENDING)
                .filter(|p| !p.stages.iter().any(|x| x == CURRENT))
                .map(|p| p.id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            start.push(Rotation {
                arn: s.arn.clone(),
                lambda: l.clone(),
                token,
            });
        }
        let g = &mut *g;
        for r in start {
            if let Some(s) = g.secrets.get_mut(&r.arn) {
                ensure_pending(s, &r.token, now);
                if let Err(e) = store::save(&g.conn, s) {
                    tracing::error!(error = %e, "secretsmanager store failure");
                    continue;
                }
            }
            g.rotating.insert(r.arn.clone(), r.token.clone());
            due.push(r);
        }
        (due, next)
    }

    /// Counts for the admin surface and `/metrics`.
    pub fn stats(&self) -> Value {
        let g = self.lock();
        let secrets = g.secrets.len();
        let versions: usize = g.secrets.values().map(|s| s.versions.len()).sum();
        let deleting = g
            .secrets
            .values()
            .filter(|s| s.deleted_ms.is_some())
            .count();
        let rotation = g.secrets.values().filter(|s| s.rotation_enabled).count();
        let stored = store::count_values(&g.conn).unwrap_or(0);
        json!({
            "Secrets": secrets,
            "Versions": versions,
            "StoredValues": stored,
            "ScheduledForDeletion": deleting,
            "RotationEnabled": rotation,
            "RotationsInProgress": g.rotating.len(),
        })
    }
}

/// A rotation to run.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub arn: String,
    pub lambda: String,
    pub token: String,
}

/// As AWS does, the version a rotation creates exists (labelled AWSPENDING,
/// without a value) before `createSecret` runs; the function's PutSecretValue
/// with this token gives it its value.
fn ensure_pending(s: &mut Secret, token: &str, now: i64) {
    if s.version(token).is_none() {
        s.versions.push(Version {
            id: token.to_string(),
            created_ms: now,
            stages: vec![],
            binary: false,
            last_accessed_ms: None,
            has_value: false,
        });
        attach(s, token, PENDING);
    }
}

/// Put `stage` on version `vid`, taking it off the others; moving AWSCURRENT
/// makes its old holder AWSPREVIOUS. Labels are otherwise independent: after a
/// rotation AWSPENDING stays on the new current version, as on AWS, until the
/// next rotation moves it.
fn attach(s: &mut Secret, vid: &str, stage: &str) {
    let old = s
        .versions
        .iter()
        .find(|v| v.stages.iter().any(|x| x == stage))
        .map(|v| v.id.clone());
    if old.as_deref() == Some(vid) {
        return;
    }
    for v in s.versions.iter_mut() {
        v.stages.retain(|x| x != stage);
    }
    if let Some(v) = s.versions.iter_mut().find(|v| v.id == vid) {
        v.stages.push(stage.to_string());
    }
    if stage == CURRENT {
        if let Some(old) = old {
            for v in s.versions.iter_mut() {
                v.stages.retain(|x| x != PREVIOUS);
            }
            if let Some(v) = s.versions.iter_mut().find(|v| v.id == old) {
                v.stages.push(PREVIOUS.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_aws() {
        assert_eq!(
            words("prod/dbPassword_v2"),
            vec!["prod", "db", "Password", "v2"]
        );
    }

    #[test]
    fn moving_current_makes_previous() {
        let mut s = Secret::default();
        for id in ["a", "b", "c"] {
            s.versions.push(Version {
                id: id.into(),
                ..Default::default()
            });
        }
        attach(&mut s, "a", CURRENT);
        attach(&mut s, "b", PENDING);
        attach(&mut s, "b", CURRENT);
        assert_eq!(s.version("a").unwrap().stages, vec![PREVIOUS]);
        assert_eq!(s.version("b").unwrap().stages, vec![PENDING, CURRENT]);
        attach(&mut s, "c", CURRENT);
        assert_eq!(s.version("a").unwrap().stages, Vec::<String>::new());
        assert_eq!(s.version("b").unwrap().stages, vec![PENDING, PREVIOUS]);
    }

    #[test]
    fn policies_are_validated() {
        assert!(policy_errors("nope").len() == 1);
        assert!(!policy_errors(
            r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#
        )
        .is_empty());
        let ok = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
        assert!(policy_errors(ok).is_empty());
        assert!(!is_public(ok));
        assert!(is_public(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*"}]}"#
        ));
    }

    #[test]
    fn rotation_schedules() {
        assert_eq!(
            next_rotation(&json!({"AutomaticallyAfterDays": 2}), 0),
            Some(2 * DAY_MS)
        );
        assert_eq!(
            next_rotation(&json!({"ScheduleExpression": "rate(10 days)"}), 0),
            Some(10 * DAY_MS)
        );
        assert!(validate_rules(
            json!({"ScheduleExpression": "rate(1 hours)"})
                .as_object()
                .unwrap()
        )
        .is_err());
        assert!(validate_rules(
            json!({"AutomaticallyAfterDays": 1, "ScheduleExpression": "rate(1 days)"})
                .as_object()
                .unwrap()
        )
        .is_err());
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    fn args(v: Value) -> Args {
        Args::parse(v.to_string().as_bytes()).unwrap()
    }

    fn core(dir: &std::path::Path) -> Core {
        let k = Keyring::open(dir).unwrap();
        Core::open(dir, k, "us-east-1".into(), "000000000000".into()).unwrap()
    }

    #[test]
    fn values_persist_sealed_and_survive_a_reopen_and_a_key_rotation() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let out = c
            .handle(
                Op::CreateSecret,
                &args(json!({"Name": "a", "SecretString": "plain-value-xyz"})),
                1000,
            )
            .unwrap();
        let arn = out["ARN"].as_str().unwrap().to_string();
        let db = std::fs::read(d.path().join("secretsmanager.db")).unwrap();
        let wal = std::fs::read(d.path().join("secretsmanager.db-wal")).unwrap_or_default();
        for bytes in [&db, &wal] {
            assert!(!bytes.windows(15).any(|w| w == b"plain-value-xyz"));
        }
        let k = c.keyring.clone();
        let old = k.current_key_id();
        k.rotate().unwrap();
        assert_eq!(c.rewrap(&k).unwrap(), 1);
        assert_eq!(c.rewrap(&k).unwrap(), 0);
        drop(c);
        let c = core(d.path());
        let v = c
            .handle(Op::GetSecretValue, &args(json!({"SecretId": arn})), 2000)
            .unwrap();
        assert_eq!(v["SecretString"], "plain-value-xyz");
        let g = c.lock();
        let ids: Vec<String> = g
            .conn
            .prepare("SELECT key_id FROM secret_versions")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(ids.iter().all(|i| *i != old), "{ids:?}");
    }

    #[test]
    fn scheduled_rotation_and_deletion_come_due() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        c.handle(
            Op::CreateSecret,
            &args(json!({"Name": "r", "SecretString": "v"})),
            0,
        )
        .unwrap();
        let (out, run) = c
            .prepare_rotation(
                &args(json!({"SecretId": "r", "RotationLambdaARN": "arn:aws:lambda:us-east-1:000000000000:function:f",
                             "RotationRules": {"AutomaticallyAfterDays": 2}, "RotateImmediately": false})),
                0,
                |_| true,
            )
            .unwrap();
        assert!(run.is_none());
        assert!(out["VersionId"].is_string());
        let (due, next) = c.due(DAY_MS);
        assert!(due.is_empty());
        assert_eq!(next, Some(2 * DAY_MS));
        let (due, _) = c.due(2 * DAY_MS);
        assert_eq!(due.len(), 1);
        // The pending version exists, without a value, until createSecret.
        let e = c
            .handle(
                Op::GetSecretValue,
                &args(json!({"SecretId": "r", "VersionStage": "AWSPENDING"})),
                2 * DAY_MS,
            )
            .unwrap_err();
        assert_eq!(e.code, "ResourceNotFoundException");
        c.handle(
            Op::PutSecretValue,
            &args(json!({"SecretId": "r", "ClientRequestToken": due[0].token, "SecretString": "v2", "VersionStages": ["AWSPENDING"]})),
            2 * DAY_MS,
        )
        .unwrap();
        c.finish_rotation(&due[0], true, 2 * DAY_MS);
        // finishSecret did not move AWSCURRENT: the rotation failed.
        assert_eq!(c.counters.rotations_failed.load(Ordering::Relaxed), 1);
        // Deletion is enforced at the end of the window.
        c.handle(
            Op::DeleteSecret,
            &args(json!({"SecretId": "r", "RecoveryWindowInDays": 7})),
            3 * DAY_MS,
        )
        .unwrap();
        assert!(c.describe_secret("r").is_ok());
        c.purge_due(10 * DAY_MS).unwrap();
        assert_eq!(
            c.describe_secret("r").unwrap_err().code,
            "ResourceNotFoundException"
        );
    }
}
