//! The Parameter Store operations over `<data>/ssm.db`: one metadata row per
//! parameter (its versions, labels, tags; `String`/`StringList` values), and one
//! row per `SecureString` version holding the value sealed by the keyring.

use base64::Engine as _;
use http::StatusCode;
use nimbus_keyring::Keyring;
use nimbus_protocol::AwsError;
use nimbus_store::migrate::{Migration, Schema, Step};
use nimbus_svc_common::tags;
use nimbus_svc_secretsmanager::args::Args;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub static SCHEMA: Schema = Schema {
    file: "ssm.db",
    migrations: &[Migration {
        name: "parameters and their sealed SecureString versions",
        step: Step::Sql(
            "CREATE TABLE parameters (
                name TEXT PRIMARY KEY,
                meta TEXT NOT NULL
            );
            CREATE TABLE secure_values (
                name    TEXT NOT NULL,
                version INTEGER NOT NULL,
                key_id  TEXT NOT NULL,
                sealed  BLOB NOT NULL,
                PRIMARY KEY (name, version)
            );",
        ),
    }],
};

const MAX_HISTORY: usize = 100;
const DEFAULT_KEY: &str = "alias/aws/ssm";
pub const REFERENCE_PREFIX: &str = "/aws/reference/secretsmanager/";

pub fn err(code: &'static str, msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, code, msg)
}
fn validation(msg: impl Into<String>) -> AwsError {
    err("ValidationException", msg)
}
fn not_found() -> AwsError {
    err("ParameterNotFound", "")
}
fn internal(e: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %e, "ssm store failure");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "An error occurred on the server side.",
    )
}
fn missing(name: &str) -> AwsError {
    validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        lower_first(name)
    ))
}
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// One version of a parameter.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PVersion {
    pub version: i64,
    pub ptype: String,
    /// `String`/`StringList` values; `SecureString` ones are sealed in `secure_values`.
    pub value: Option<String>,
    pub description: Option<String>,
    pub allowed_pattern: Option<String>,
    pub key_id: Option<String>,
    pub tier: String,
    pub data_type: String,
    pub policies: Vec<String>,
    pub labels: Vec<String>,
    pub modified_ms: i64,
    pub user: String,
}

/// A parameter and its history (oldest first).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Param {
    pub name: String,
    pub versions: Vec<PVersion>,
    pub tags: Vec<(String, String)>,
}

impl Param {
    fn latest(&self) -> &PVersion {
        // A stored parameter always has at least one version.
        &self.versions[self.versions.len() - 1]
    }
}

fn aad(name: &str, version: i64) -> Vec<u8> {
    format!("ssm\0{name}\0{version}").into_bytes()
}

#[derive(Default)]
pub struct Counters {
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub decryptions: AtomicU64,
}

pub struct Inner {
    conn: Connection,
    params: BTreeMap<String, Param>,
}

/// The Parameter Store.
pub struct Ssm {
    inner: Mutex<Inner>,
    pub keyring: Arc<Keyring>,
    region: String,
    account: String,
    data_dir: std::path::PathBuf,
    pub counters: Counters,
}

/// A `name`, `name:version` or `name:label` reference.
struct Selector<'a> {
    name: &'a str,
    version: Option<i64>,
    label: Option<&'a str>,
    raw: Option<&'a str>,
}

fn selector(full: &str) -> Result<Selector<'_>, AwsError> {
    // An ARN names the parameter after `parameter`.
    let s = match full.strip_prefix("arn:") {
        Some(_) => {
            let idx = full
                .find(":parameter")
                .ok_or_else(|| validation(format!("Invalid parameter ARN: {full}")))?;
            let rest = &full[idx + ":parameter".len()..];
            if rest.starts_with('/') && !rest[1..].contains('/') {
                // `parameter/name` of a name without hierarchy.
                &rest[1..]
            } else {
                rest
            }
        }
        None => full,
    };
    match s.split_once(':') {
        None => Ok(Selector {
            name: s,
            version: None,
            label: None,
            raw: None,
        }),
        Some((name, sel)) => {
            if sel.is_empty() || sel.contains(':') {
                return Err(validation(format!("Invalid parameter selector: {s}")));
            }
            let raw = Some(&s[name.len()..]);
            if sel.chars().all(|c| c.is_ascii_digit()) {
                let v = sel
                    .parse::<i64>()
                    .map_err(|_| validation(format!("Invalid parameter version: {sel}")))?;
                Ok(Selector {
                    name,
                    version: Some(v),
                    label: None,
                    raw,
                })
            } else {
                Ok(Selector {
                    name,
                    version: None,
                    label: Some(sel),
                    raw,
                })
            }
        }
    }
}

fn check_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 2048 {
        return Err(validation(
            "Parameter name must be between 1 and 2048 characters.",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
    {
        return Err(validation(
            "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: /get/parameters2-/by1./path0_.",
        ));
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(validation(
            "No access to reserved parameter name: parameter names can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).",
        ));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(validation(
            "Parameter name must be a fully qualified name: a name with a hierarchy begins with /.",
        ));
    }
    if name.contains("//") || (name.len() > 1 && name.ends_with('/')) {
        return Err(validation(format!(
            "Parameter name {name} is not a valid hierarchy."
        )));
    }
    if name.matches('/').count() > 15 {
        return Err(err(
            "HierarchyLevelLimitExceededException",
            "A hierarchy can have a maximum of 15 levels.",
        ));
    }
    Ok(())
}

fn check_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 100
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !l.starts_with(|c: char| c.is_ascii_digit())
        && !l.to_ascii_lowercase().starts_with("aws")
        && !l.to_ascii_lowercase().starts_with("ssm")
}

fn check_policies(text: &str) -> Result<Vec<String>, AwsError> {
    let v: Value = serde_json::from_str(text).map_err(|_| {
        err(
            "InvalidPolicyTypeException",
            "The policies are not valid JSON.",
        )
    })?;
    let list = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => {
            return Err(err(
                "InvalidPolicyTypeException",
                "The policies must be a JSON list.",
            ))
        }
    };
    let mut out = Vec::new();
    for p in list {
        let ty = p.get("Type").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            ty,
            "Expiration" | "ExpirationNotification" | "NoChangeNotification"
        ) {
            return Err(err(
                "InvalidPolicyTypeException",
                format!("The policy type {ty} is not supported. Expected Expiration, ExpirationNotification or NoChangeNotification."),
            ));
        }
        if !p.get("Attributes").is_some_and(Value::is_object) {
            return Err(err(
                "InvalidPolicyAttributeException",
                format!("The {ty} policy needs an Attributes object."),
            ));
        }
        out.push(p.to_string());
    }
    if out.len() > 10 {
        return Err(err(
            "PoliciesLimitExceededException",
            "A parameter can have at most 10 policies.",
        ));
    }
    Ok(out)
}

fn page<T: Clone>(
    items: &[T],
    a: &Args,
    default: i64,
    limit: i64,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let max = a.i64("MaxResults")?.unwrap_or(default);
    if !(1..=limit).contains(&max) {
        return Err(validation(format!(
            "1 validation error detected: Value '{max}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {limit}"
        )));
    }
    tags::page(items, a.str("NextToken")?, max as usize)
        .map_err(|_| err("InvalidNextToken", "The specified token isn't valid."))
}

/// One `ParameterStringFilter`.
struct StrFilter {
    key: String,
    option: String,
    values: Vec<String>,
}

fn string_filters(a: &Args, field: &str, allowed: &[&str]) -> Result<Vec<StrFilter>, AwsError> {
    let Some(fs) = a.array(field)? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for f in fs {
        let key = f
            .get("Key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let tag = key.starts_with("tag:");
        if !tag && !allowed.contains(&key.as_str()) {
            return Err(err(
                "InvalidFilterKey",
                format!("The following filter key is not valid: {key}. Valid filter keys include: [{}].", allowed.join(", ")),
            ));
        }
        let option = f
            .get("Option")
            .and_then(Value::as_str)
            .unwrap_or("Equals")
            .to_string();
        let ok_option = match key.as_str() {
            "Path" => matches!(option.as_str(), "Recursive" | "OneLevel"),
            "Name" => matches!(option.as_str(), "Equals" | "BeginsWith" | "Contains"),
            _ if tag => matches!(option.as_str(), "Equals" | "BeginsWith" | "Contains"),
            "Label" => matches!(option.as_str(), "Equals"),
            _ => matches!(option.as_str(), "Equals" | "BeginsWith"),
        };
        if !ok_option {
            return Err(err(
                "InvalidFilterOption",
                format!("The option {option} is not valid for the filter key {key}."),
            ));
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
        if values.is_empty() && !tag {
            return Err(err(
                "InvalidFilterValue",
                format!("The filter {key} needs values."),
            ));
        }
        out.push(StrFilter {
            key,
            option,
            values,
        });
    }
    Ok(out)
}

fn str_match(option: &str, have: &str, want: &str) -> bool {
    match option {
        "BeginsWith" => have.starts_with(want),
        "Contains" => have.contains(want),
        _ => have == want,
    }
}

fn filter_ok(p: &Param, v: &PVersion, f: &StrFilter) -> bool {
    let any = |have: &str| f.values.iter().any(|w| str_match(&f.option, have, w));
    match f.key.as_str() {
        "Name" => {
            // Names match with or without the leading slash.
            f.values.iter().any(|w| {
                let w2 = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("/{w}")
                };
                let n2 = if p.name.starts_with('/') {
                    p.name.clone()
                } else {
                    format!("/{}", p.name)
                };
                str_match(&f.option, &n2, &w2)
            })
        }
        "Type" => any(&v.ptype),
        "KeyId" => v.key_id.as_deref().is_some_and(any),
        "Tier" => any(&v.tier),
        "DataType" => any(&v.data_type),
        "Label" => p
            .versions
            .iter()
            .any(|x| x.labels.iter().any(|l| f.values.contains(l))),
        "Path" => f
            .values
            .iter()
            .any(|path| in_path(&p.name, path, f.option == "Recursive")),
        k => {
            let tk = &k[4..];
            p.tags.iter().any(|(key, val)| {
                key == tk
                    && (f.values.is_empty()
                        || f.values.iter().any(|w| str_match(&f.option, val, w)))
            })
        }
    }
}

fn in_path(name: &str, path: &str, recursive: bool) -> bool {
    let prefix = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    match name.strip_prefix(&prefix) {
        Some(rest) if !rest.is_empty() => recursive || !rest.contains('/'),
        _ => false,
    }
}

impl Ssm {
    pub fn open(
        data_dir: &std::path::Path,
        keyring: Arc<Keyring>,
        region: String,
        account: String,
    ) -> Result<Self, String> {
        let conn = nimbus_store::open_migrated(&data_dir.join("ssm.db"), &SCHEMA)
            .map_err(|e| e.to_string())?;
        let mut params = BTreeMap::new();
        {
            let mut st = conn
                .prepare("SELECT meta FROM parameters")
                .map_err(|e| e.to_string())?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| e.to_string())?;
            for r in rows {
                let meta = r.map_err(|e| e.to_string())?;
                match serde_json::from_str::<Param>(&meta) {
                    Ok(p) if !p.versions.is_empty() => {
                        params.insert(p.name.clone(), p);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "unreadable parameter row skipped"),
                }
            }
        }
        Ok(Self {
            inner: Mutex::new(Inner { conn, params }),
            keyring,
            region,
            account,
            data_dir: data_dir.to_path_buf(),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arn(&self, name: &str) -> String {
        let n = name.strip_prefix('/').unwrap_or(name);
        format!("arn:aws:ssm:{}:{}:parameter/{n}", self.region, self.account)
    }

    /// Re-seal every `SecureString` value not under the current key.
    pub fn rewrap(&self, keyring: &Keyring) -> Result<u64, String> {
        let g = self.lock();
        let current = keyring.current_key_id();
        let rows: Vec<(String, i64, Vec<u8>)> = {
            let mut st = g
                .conn
                .prepare("SELECT name, version, sealed FROM secure_values WHERE key_id != ?1")
                .map_err(|e| e.to_string())?;
            let rows = st
                .query_map(params![current], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| e.to_string())?;
            rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?
        };
        let tx = g.conn.unchecked_transaction().map_err(|e| e.to_string())?;
        let mut n = 0;
        for (name, version, sealed) in rows {
            if let Some(new) = keyring
                .rewrap(&aad(&name, version), &sealed)
                .map_err(|e| e.to_string())?
            {
                let kid = nimbus_keyring::key_id_of(&new)
                    .unwrap_or_default()
                    .to_string();
                tx.execute(
                    "UPDATE secure_values SET key_id = ?1, sealed = ?2 WHERE name = ?3 AND version = ?4",
                    params![kid, new, name, version],
                )
                .map_err(|e| e.to_string())?;
                n += 1;
            }
        }
        tx.commit().map_err(|e| e.to_string())?;
        if n > 0 {
            tracing::info!(reencrypted = n, key_id = %current, "ssm SecureString values re-encrypted");
        }
        Ok(n)
    }

    fn sealed(&self, g: &Inner, name: &str, version: i64) -> Result<Vec<u8>, AwsError> {
        g.conn
            .query_row(
                "SELECT sealed FROM secure_values WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(internal)?
            .ok_or_else(|| internal("a SecureString version has no stored value"))
    }

    /// A version's value as `GetParameter` answers it: SecureString values
    /// decrypted only when asked, else their sealed form (base64).
    fn value_of(
        &self,
        g: &Inner,
        p: &Param,
        v: &PVersion,
        decrypt: bool,
    ) -> Result<String, AwsError> {
        if v.ptype != "SecureString" {
            return Ok(v.value.clone().unwrap_or_default());
        }
        let sealed = self.sealed(g, &p.name, v.version)?;
        if !decrypt {
            return Ok(base64::engine::general_purpose::STANDARD.encode(&sealed));
        }
        self.counters.decryptions.fetch_add(1, Ordering::Relaxed);
        let plain = self
            .keyring
            .open_sealed(&aad(&p.name, v.version), &sealed)
            .map_err(|e| {
                tracing::error!(error = %e, "a SecureString value could not be decrypted");
                err(
                    "InvalidKeyId",
                    "The SecureString value could not be decrypted.",
                )
            })?;
        String::from_utf8(plain).map_err(|_| internal("a SecureString value is not UTF-8"))
    }

    fn save(&self, conn: &Connection, p: &Param) -> Result<(), AwsError> {
        conn.execute(
            "INSERT INTO parameters (name, meta) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET meta = excluded.meta",
            params![p.name, serde_json::to_string(p).unwrap_or_default()],
        )
        .map_err(internal)?;
        Ok(())
    }

    pub fn handle(&self, op: crate::Op, a: &Args, user: &str, now: i64) -> Result<Value, AwsError> {
        use crate::Op;
        match op {
            Op::PutParameter => self.put(a, user, now),
            Op::GetParameter => self.get(a),
            Op::GetParameters => self.get_many(a),
            Op::GetParametersByPath => self.by_path(a),
            Op::GetParameterHistory => self.history(a),
            Op::LabelParameterVersion => self.label(a),
            Op::UnlabelParameterVersion => self.unlabel(a),
            Op::DeleteParameter => self.delete(a),
            Op::DeleteParameters => self.delete_many(a),
            Op::DescribeParameters => self.describe(a),
            Op::AddTagsToResource => self.add_tags(a),
            Op::ListTagsForResource => self.list_tags(a),
            Op::RemoveTagsFromResource => self.remove_tags(a),
            _ => Err(AwsError::not_implemented("ssm", op.name())),
        }
    }

    fn put(&self, a: &Args, user: &str, now: i64) -> Result<Value, AwsError> {
        let name = a.req_str("Name", missing)?;
        let sel = selector(name)?;
        if sel.raw.is_some() {
            return Err(validation(
                "Parameter name can't contain a version or label selector.",
            ));
        }
        let name = sel.name;
        check_name(name)?;
        let value = a.req_str("Value", missing)?;
        if value.is_empty() {
            return Err(validation(
                "1 validation error detected: Value '' at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        let ptype = a.str("Type")?;
        if let Some(t) = ptype {
            if !matches!(t, "String" | "StringList" | "SecureString") {
                return Err(validation(format!(
                    "1 validation error detected: Value '{t}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
                )));
            }
        }
        let overwrite = a.bool("Overwrite")?.unwrap_or(false);
        let tags = a.tags("Tags")?;
        if overwrite && tags.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(validation(
                "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
            ));
        }
        let description = a.str("Description")?;
        if description.is_some_and(|d| d.chars().count() > 1024) {
            return Err(validation("Description must be at most 1024 characters."));
        }
        let pattern = a.str("AllowedPattern")?;
        let tier_req = a.str("Tier")?;
        if let Some(t) = tier_req {
            if !matches!(t, "Standard" | "Advanced" | "Intelligent-Tiering") {
                return Err(validation(format!(
                    "1 validation error detected: Value '{t}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Standard, Advanced, Intelligent-Tiering]"
                )));
            }
        }
        let data_type = a.str("DataType")?;
        if let Some(d) = data_type {
            if !matches!(d, "text" | "aws:ec2:image" | "aws:ssm:integration") {
                return Err(validation(format!(
                    "The following data type is not supported: {d} (Data type names are all lowercase.)"
                )));
            }
        }
        let policies = match a.str("Policies")? {
            Some(p) => Some(check_policies(p)?),
            None => None,
        };
        let key_id = a.str("KeyId")?;

        let mut g = self.lock();
        let existing = g.params.get(name).cloned();
        if existing.is_some() && !overwrite {
            return Err(err(
                "ParameterAlreadyExists",
                "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
            ));
        }
        let prev = existing.as_ref().map(|p| p.latest().clone());
        let ptype = match (ptype, &prev) {
            (Some(t), _) => t.to_string(),
            (None, Some(p)) => p.ptype.clone(),
            (None, None) => {
                return Err(validation(
                    "A parameter type is required when you create a parameter.",
                ))
            }
        };
        if key_id.is_some() && ptype != "SecureString" {
            return Err(validation(
                "KeyId is required for SecureString type parameter only.",
            ));
        }
        if let Some(k) = key_id.filter(|k| !k.starts_with("alias/aws/")) {
            self.keyring.check_kms_key(k).map_err(|why| {
                err(
                    "InvalidKeyId",
                    format!("The KMS key {k} can't be used: {why}"),
                )
            })?;
        }
        let inherited = prev.as_ref().and_then(|p| p.allowed_pattern.clone());
        if let Some(p) = pattern.or(inherited.as_deref()) {
            let re = regex::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|_| {
                    validation(format!(
                        "The AllowedPattern {p} is not a valid regular expression."
                    ))
                })?;
            if !re.is_match(value) {
                return Err(err(
                    "ParameterPatternMismatchException",
                    format!("Parameter value, cannot be validated against allowedPattern: {p}"),
                ));
            }
        }
        let data_type = data_type
            .map(str::to_string)
            .or_else(|| prev.as_ref().map(|p| p.data_type.clone()))
            .unwrap_or_else(|| "text".into());
        if data_type == "aws:ec2:image" {
            let ok = value.strip_prefix("ami-").is_some_and(|h| {
                (h.len() == 8 || h.len() == 17) && h.chars().all(|c| c.is_ascii_hexdigit())
            });
            if !ok {
                return Err(validation(format!(
                    "The parameter value {value:?} is not a valid image id for the data type aws:ec2:image."
                )
                .replace(value, "<value>")));
            }
        }
        let policies = policies.unwrap_or_else(|| {
            prev.as_ref()
                .map(|p| p.policies.clone())
                .unwrap_or_default()
        });
        let prev_tier = prev.as_ref().map(|p| p.tier.as_str()).unwrap_or("Standard");
        let needs_advanced = value.chars().count() > 4096 || !policies.is_empty();
        let tier = match tier_req {
            Some("Advanced") => "Advanced",
            Some("Standard") => {
                if prev_tier == "Advanced" {
                    return Err(validation(
                        "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the advanced parameter and recreate it as a standard parameter.",
                    ));
                }
                if needs_advanced {
                    return Err(validation(
                        "Standard tier parameters support a maximum parameter value of 4096 characters and no policies. To create a larger parameter value or use policies, upgrade the parameter to use the advanced-parameter tier.",
                    ));
                }
                "Standard"
            }
            _ => {
                if needs_advanced || prev_tier == "Advanced" {
                    "Advanced"
                } else {
                    "Standard"
                }
            }
        };
        if value.chars().count() > 8192 {
            return Err(validation(
                "Advanced tier parameters support a maximum parameter value of 8192 characters.",
            ));
        }
        let mut p = existing.unwrap_or_else(|| Param {
            name: name.to_string(),
            versions: vec![],
            tags: tags.clone().unwrap_or_default(),
        });
        let version = prev.as_ref().map_or(1, |v| v.version + 1);
        let mut dropped = None;
        if p.versions.len() >= MAX_HISTORY {
            if !p.versions[0].labels.is_empty() {
                return Err(err(
                    "ParameterMaxVersionLimitExceeded",
                    format!(
                        "You attempted to create a new version of {name} by calling the PutParameter API with the overwrite flag. Version {}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
                        p.versions[0].version
                    ),
                ));
            }
            dropped = Some(p.versions.remove(0).version);
        }
        let secure = ptype == "SecureString";
        let v = PVersion {
            version,
            ptype: ptype.clone(),
            value: (!secure).then(|| value.to_string()),
            description: description
                .map(str::to_string)
                .or_else(|| prev.as_ref().and_then(|p| p.description.clone())),
            allowed_pattern: pattern
                .map(str::to_string)
                .or_else(|| prev.as_ref().and_then(|p| p.allowed_pattern.clone())),
            key_id: secure.then(|| {
                key_id
                    .map(str::to_string)
                    .or_else(|| prev.as_ref().and_then(|p| p.key_id.clone()))
                    .unwrap_or_else(|| DEFAULT_KEY.into())
            }),
            tier: tier.to_string(),
            data_type,
            policies,
            labels: vec![],
            modified_ms: now,
            user: user.to_string(),
        };
        p.versions.push(v);
        let g = &mut *g;
        let tx = g.conn.unchecked_transaction().map_err(internal)?;
        if secure {
            let sealed = self
                .keyring
                .seal(&aad(name, version), value.as_bytes())
                .map_err(internal)?;
            let kid = nimbus_keyring::key_id_of(&sealed)
                .unwrap_or_default()
                .to_string();
            tx.execute(
                "INSERT OR REPLACE INTO secure_values (name, version, key_id, sealed) VALUES (?1, ?2, ?3, ?4)",
                params![name, version, kid, sealed],
            )
            .map_err(internal)?;
        }
        if let Some(d) = dropped {
            tx.execute(
                "DELETE FROM secure_values WHERE name = ?1 AND version = ?2",
                params![name, d],
            )
            .map_err(internal)?;
        }
        self.save(&tx, &p)?;
        tx.commit().map_err(internal)?;
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        g.params.insert(name.to_string(), p);
        Ok(json!({"Version": version, "Tier": tier}))
    }

    fn pick<'p>(p: &'p Param, sel: &Selector<'_>) -> Result<&'p PVersion, AwsError> {
        if let Some(n) = sel.version {
            return p.versions.iter().find(|v| v.version == n).ok_or_else(|| {
                err(
                    "ParameterVersionNotFound",
                    format!(
                        "Systems Manager could not find version {n} of {}. Verify the version and try again.",
                        p.name
                    ),
                )
            });
        }
        if let Some(l) = sel.label {
            return p
                .versions
                .iter()
                .find(|v| v.labels.iter().any(|x| x == l))
                .ok_or_else(|| {
                    err(
                        "ParameterVersionNotFound",
                        format!(
                            "Systems Manager could not find a version of {} with the label {l}. Verify the label and try again.",
                            p.name
                        ),
                    )
                });
        }
        Ok(p.latest())
    }

    fn param_json(
        &self,
        g: &Inner,
        p: &Param,
        v: &PVersion,
        decrypt: bool,
        selector: Option<&str>,
    ) -> Result<Value, AwsError> {
        let mut o = json!({
            "Name": p.name,
            "Type": v.ptype,
            "Value": self.value_of(g, p, v, decrypt)?,
            "Version": v.version,
            "LastModifiedDate": secs(v.modified_ms),
            "ARN": self.arn(&p.name),
            "DataType": v.data_type,
        });
        if let Some(s) = selector {
            o["Selector"] = json!(s);
        }
        Ok(o)
    }

    /// `/aws/reference/secretsmanager/<id>[:stage-or-version]`.
    fn reference(&self, full: &str, decrypt: bool) -> Result<Value, AwsError> {
        if !decrypt {
            return Err(validation(
                "WithDecryption flag must be True for retrieving a Secret Manager secret.",
            ));
        }
        let id = &full[REFERENCE_PREFIX.len()..];
        let (id, sel) = match id.split_once(':') {
            Some((i, s)) => (i, Some(s)),
            None => (id, None),
        };
        let Some(sm) = nimbus_svc_secretsmanager::running(&self.data_dir) else {
            return Err(not_found());
        };
        let looks_like_version =
            sel.is_some_and(|s| s.len() >= 32 && uuid::Uuid::parse_str(s).is_ok());
        let (vid, stage) = if looks_like_version {
            (sel, None)
        } else {
            (None, sel)
        };
        let (meta, value) = sm
            .core
            .read_value(id, vid, stage, nimbus_core::now_ms())
            .map_err(|e| match e.code.as_ref() {
                "ResourceNotFoundException" => {
                    err("ParameterNotFound", format!("Secret {id} not found."))
                }
                _ => err("ValidationException", e.message),
            })?;
        let describe = sm.core.describe_secret(id).unwrap_or(Value::Null);
        let mut o = json!({
            "Name": full,
            "Type": "SecureString",
            "Version": 0,
            "SourceResult": describe.to_string(),
            "LastModifiedDate": meta["CreatedDate"].clone(),
            "ARN": meta["ARN"].clone(),
            "DataType": "text",
        });
        match value {
            nimbus_svc_secretsmanager::SecretValue::String(s) => o["Value"] = json!(s),
            nimbus_svc_secretsmanager::SecretValue::Binary(b) => {
                o["Value"] = json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
        }
        if let Some(s) = sel {
            o["Selector"] = json!(format!(":{s}"));
        }
        Ok(o)
    }

    fn get_one(&self, full: &str, decrypt: bool) -> Result<Value, AwsError> {
        if full.starts_with(REFERENCE_PREFIX) {
            return self.reference(full, decrypt);
        }
        let sel = selector(full)?;
        let g = self.lock();
        let p = g.params.get(sel.name).ok_or_else(not_found)?;
        let v = Self::pick(p, &sel)?;
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.param_json(&g, p, v, decrypt, sel.raw)
    }

    fn get(&self, a: &Args) -> Result<Value, AwsError> {
        let name = a.req_str("Name", missing)?;
        let decrypt = a.bool("WithDecryption")?.unwrap_or(false);
        Ok(json!({"Parameter": self.get_one(name, decrypt)?}))
    }

    fn get_many(&self, a: &Args) -> Result<Value, AwsError> {
        let names = a.strings("Names")?.ok_or_else(|| missing("Names"))?;
        if names.is_empty() || names.len() > 10 {
            return Err(validation(
                "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
            ));
        }
        let decrypt = a.bool("WithDecryption")?.unwrap_or(false);
        let mut found = Vec::new();
        let mut invalid = Vec::new();
        for n in names {
            match self.get_one(&n, decrypt) {
                Ok(p) => found.push(p),
                Err(e)
                    if matches!(
                        e.code.as_ref(),
                        "ParameterNotFound" | "ParameterVersionNotFound"
                    ) =>
                {
                    invalid.push(n)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(json!({"Parameters": found, "InvalidParameters": invalid}))
    }

    fn by_path(&self, a: &Args) -> Result<Value, AwsError> {
        let path = a.req_str("Path", missing)?;
        if !path.starts_with('/') {
            return Err(validation("The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\"."));
        }
        let recursive = a.bool("Recursive")?.unwrap_or(false);
        let decrypt = a.bool("WithDecryption")?.unwrap_or(false);
        let filters = string_filters(a, "ParameterFilters", &["Type", "KeyId", "Label"])?;
        let g = self.lock();
        let mut hits: Vec<(String, i64)> = Vec::new();
        for p in g.params.values() {
            let matches_path = if path == "/" {
                p.name.starts_with('/') && (recursive || !p.name[1..].contains('/'))
            } else {
                in_path(&p.name, path, recursive)
            };
            if !matches_path {
                continue;
            }
            let label = filters.iter().find(|f| f.key == "Label");
            let v = match label {
                Some(f) => match p
                    .versions
                    .iter()
                    .rev()
                    .find(|v| v.labels.iter().any(|l| f.values.contains(l)))
                {
                    Some(v) => v,
                    None => continue,
                },
                None => p.latest(),
            };
            if filters
                .iter()
                .filter(|f| f.key != "Label")
                .all(|f| filter_ok(p, v, f))
            {
                hits.push((p.name.clone(), v.version));
            }
        }
        let (items, next) = page(&hits, a, 10, 10)?;
        let mut out = Vec::new();
        for (name, version) in items {
            let p = &g.params[&name];
            let v = p
                .versions
                .iter()
                .find(|v| v.version == version)
                .unwrap_or(p.latest());
            out.push(self.param_json(&g, p, v, decrypt, None)?);
        }
        let mut o = json!({"Parameters": out});
        if let Some(n) = next {
            o["NextToken"] = json!(n);
        }
        Ok(o)
    }

    fn history(&self, a: &Args) -> Result<Value, AwsError> {
        let name = a.req_str("Name", missing)?;
        let decrypt = a.bool("WithDecryption")?.unwrap_or(false);
        let sel = selector(name)?;
        let g = self.lock();
        let p = g.params.get(sel.name).ok_or_else(not_found)?;
        let (items, next) = page(&p.versions, a, 50, 50)?;
        let mut out = Vec::new();
        for v in &items {
            let mut o = json!({
                "Name": p.name,
                "Type": v.ptype,
                "LastModifiedDate": secs(v.modified_ms),
                "LastModifiedUser": v.user,
                "Value": self.value_of(&g, p, v, decrypt)?,
                "Version": v.version,
                "Labels": v.labels,
                "Tier": v.tier,
                "Policies": policies_json(&v.policies),
                "DataType": v.data_type,
            });
            if let Some(d) = &v.description {
                o["Description"] = json!(d);
            }
            if let Some(k) = &v.key_id {
                o["KeyId"] = json!(k);
            }
            if let Some(ap) = &v.allowed_pattern {
                o["AllowedPattern"] = json!(ap);
            }
            out.push(o);
        }
        let mut o = json!({"Parameters": out});
        if let Some(n) = next {
            o["NextToken"] = json!(n);
        }
        Ok(o)
    }

    fn modify(
        &self,
        name: &str,
        f: impl FnOnce(&mut Param) -> Result<Value, AwsError>,
    ) -> Result<Value, AwsError> {
        let mut g = self.lock();
        let mut p = g.params.get(name).cloned().ok_or_else(not_found)?;
        let out = f(&mut p)?;
        self.save(&g.conn, &p)?;
        g.params.insert(name.to_string(), p);
        Ok(out)
    }

    fn label(&self, a: &Args) -> Result<Value, AwsError> {
        let name = a.req_str("Name", missing)?;
        let labels = a.strings("Labels")?.ok_or_else(|| missing("Labels"))?;
        if labels.is_empty() || labels.len() > 10 {
            return Err(validation("Labels must have between 1 and 10 items."));
        }
        let version = a.i64("ParameterVersion")?;
        let sel = selector(name)?;
        self.modify(sel.name, |p| {
            let target = version.unwrap_or(p.latest().version);
            if !p.versions.iter().any(|v| v.version == target) {
                return Err(err(
                    "ParameterVersionNotFound",
                    format!("Systems Manager could not find version {target} of {}. Verify the version and try again.", p.name),
                ));
            }
            let (ok, bad): (Vec<String>, Vec<String>) =
                labels.into_iter().partition(|l| check_label(l));
            let have = p
                .versions
                .iter()
                .find(|v| v.version == target)
                .map(|v| v.labels.len())
                .unwrap_or(0);
            let new: Vec<&String> = ok
                .iter()
                .filter(|l| !p.versions.iter().any(|v| v.version == target && v.labels.contains(l)))
                .collect();
            if have + new.len() > 10 {
                return Err(err(
                    "ParameterVersionLabelLimitExceeded",
                    "A parameter version can have a maximum of 10 labels. Move one or more labels to another version and try again.",
                ));
            }
            for l in &ok {
                for v in p.versions.iter_mut() {
                    if v.version == target {
                        if !v.labels.contains(l) {
                            v.labels.push(l.clone());
                        }
                    } else {
                        v.labels.retain(|x| x != l);
                    }
                }
            }
            Ok(json!({"InvalidLabels": bad, "ParameterVersion": target}))
        })
    }

    fn unlabel(&self, a: &Args) -> Result<Value, AwsError> {
        let name = a.req_str("Name", missing)?;
        let version = a
            .i64("ParameterVersion")?
            .ok_or_else(|| missing("ParameterVersion"))?;
        let labels = a.strings("Labels")?.ok_or_else(|| missing("Labels"))?;
        if labels.is_empty() || labels.len() > 10 {
            return Err(validation("Labels must have between 1 and 10 items."));
        }
        let sel = selector(name)?;
        self.modify(sel.name, |p| {
            let v = p
                .versions
                .iter_mut()
                .find(|v| v.version == version)
                .ok_or_else(|| {
                    err(
                        "ParameterVersionNotFound",
                        format!("Systems Manager could not find version {version} of the parameter. Verify the version and try again."),
                    )
                })?;
            let (removed, invalid): (Vec<String>, Vec<String>) =
                labels.into_iter().partition(|l| v.labels.contains(l));
            v.labels.retain(|l| !removed.contains(l));
            Ok(json!({"RemovedLabels": removed, "InvalidLabels": invalid}))
        })
    }

    fn remove(&self, g: &mut Inner, name: &str) -> Result<bool, AwsError> {
        if !g.params.contains_key(name) {
            return Ok(false);
        }
        let tx = g.conn.unchecked_transaction().map_err(internal)?;
        tx.execute("DELETE FROM secure_values WHERE name = ?1", params![name])
            .map_err(internal)?;
        tx.execute("DELETE FROM parameters WHERE name = ?1", params![name])
            .map_err(internal)?;
        tx.commit().map_err(internal)?;
        g.params.remove(name);
        Ok(true)
    }

    fn delete(&self, a: &Args) -> Result<Value, AwsError> {
        let name = a.req_str("Name", missing)?;
        let mut g = self.lock();
        if !self.remove(&mut g, name)? {
            return Err(not_found());
        }
        Ok(json!({}))
    }

    fn delete_many(&self, a: &Args) -> Result<Value, AwsError> {
        let names = a.strings("Names")?.ok_or_else(|| missing("Names"))?;
        if names.is_empty() || names.len() > 10 {
            return Err(validation(
                "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
            ));
        }
        let mut g = self.lock();
        let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
        for n in names {
            if self.remove(&mut g, &n)? {
                deleted.push(n);
            } else {
                invalid.push(n);
            }
        }
        Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
    }

    fn describe(&self, a: &Args) -> Result<Value, AwsError> {
        let mut filters = string_filters(
            a,
            "ParameterFilters",
            &["Name", "Type", "KeyId", "Path", "Tier", "DataType", "Label"],
        )?;
        if let Some(old) = a.array("Filters")? {
            if !filters.is_empty() {
                return Err(validation(
                    "You can use either Filters or ParameterFilters in a single request.",
                ));
            }
            for f in old {
                let key = f.get("Key").and_then(Value::as_str).unwrap_or("");
                if !matches!(key, "Name" | "Type" | "KeyId") {
                    return Err(err(
                        "InvalidFilterKey",
                        format!("The filter key {key} is not valid."),
                    ));
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
                filters.push(StrFilter {
                    key: key.to_string(),
                    option: if key == "Name" {
                        "BeginsWith"
                    } else {
                        "Equals"
                    }
                    .into(),
                    values,
                });
            }
        }
        let g = self.lock();
        let items: Vec<&Param> = g
            .params
            .values()
            .filter(|p| filters.iter().all(|f| filter_ok(p, p.latest(), f)))
            .collect();
        let (items, next) = page(&items, a, 50, 50)?;
        let list: Vec<Value> = items
            .iter()
            .map(|p| {
                let v = p.latest();
                let mut o = json!({
                    "Name": p.name,
                    "ARN": self.arn(&p.name),
                    "Type": v.ptype,
                    "LastModifiedDate": secs(v.modified_ms),
                    "LastModifiedUser": v.user,
                    "Version": v.version,
                    "Tier": v.tier,
                    "Policies": policies_json(&v.policies),
                    "DataType": v.data_type,
                });
                if let Some(d) = &v.description {
                    o["Description"] = json!(d);
                }
                if let Some(k) = &v.key_id {
                    o["KeyId"] = json!(k);
                }
                if let Some(ap) = &v.allowed_pattern {
                    o["AllowedPattern"] = json!(ap);
                }
                o
            })
            .collect();
        let mut o = json!({"Parameters": list});
        if let Some(n) = next {
            o["NextToken"] = json!(n);
        }
        Ok(o)
    }

    fn tag_target(a: &Args) -> Result<&str, AwsError> {
        let ty = a.req_str("ResourceType", missing)?;
        let id = a.req_str("ResourceId", missing)?;
        if ty != "Parameter" {
            return Err(err(
                "InvalidResourceType",
                format!("Nimbus's Parameter Store tags parameters only, not {ty} resources."),
            ));
        }
        Ok(id)
    }

    fn add_tags(&self, a: &Args) -> Result<Value, AwsError> {
        let id = Self::tag_target(a)?;
        let tags = a.tags("Tags")?.ok_or_else(|| missing("Tags"))?;
        if tags::check(&tags, false).is_err() {
            return Err(validation(
                "Tag keys must be 1-128 characters and values at most 256.",
            ));
        }
        self.modify(id, |p| {
            tags::merge(&mut p.tags, tags).map_err(|e| err("TooManyTagsError", e.to_string()))?;
            Ok(json!({}))
        })
        .map_err(|e| {
            if e.code == "ParameterNotFound" {
                invalid_resource()
            } else {
                e
            }
        })
    }

    fn list_tags(&self, a: &Args) -> Result<Value, AwsError> {
        let id = Self::tag_target(a)?;
        let g = self.lock();
        let p = g.params.get(id).ok_or_else(invalid_resource)?;
        Ok(json!({"TagList": tags::to_json(&p.tags, "Key", "Value")}))
    }

    fn remove_tags(&self, a: &Args) -> Result<Value, AwsError> {
        let id = Self::tag_target(a)?;
        let keys = a.strings("TagKeys")?.ok_or_else(|| missing("TagKeys"))?;
        self.modify(id, |p| {
            tags::remove(&mut p.tags, &keys);
            Ok(json!({}))
        })
        .map_err(|e| {
            if e.code == "ParameterNotFound" {
                invalid_resource()
            } else {
                e
            }
        })
    }

    /// Counts for the admin surface and `/metrics` (never values).
    pub fn stats(&self) -> Value {
        let g = self.lock();
        let mut by_type: Map<String, Value> = Map::new();
        let mut versions = 0;
        for p in g.params.values() {
            versions += p.versions.len();
            let t = &p.latest().ptype;
            let n = by_type.get(t).and_then(Value::as_u64).unwrap_or(0);
            by_type.insert(t.clone(), json!(n + 1));
        }
        json!({
            "Parameters": g.params.len(),
            "Versions": versions,
            "ByType": by_type,
        })
    }
}

fn invalid_resource() -> AwsError {
    err(
        "InvalidResourceId",
        "The resource ID is not valid. Verify that the resource ID is correct and try again.",
    )
}

fn policies_json(p: &[String]) -> Value {
    Value::Array(
        p.iter()
            .map(|t| {
                let ty = serde_json::from_str::<Value>(t)
                    .ok()
                    .and_then(|v| v.get("Type").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                json!({"PolicyText": t, "PolicyType": ty, "PolicyStatus": "Pending"})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_names() {
        let s = selector("/a/b:3").unwrap();
        assert_eq!((s.name, s.version, s.raw), ("/a/b", Some(3), Some(":3")));
        let s = selector("/a/b:prod").unwrap();
        assert_eq!((s.name, s.label), ("/a/b", Some("prod")));
        assert!(selector("/a:b:c").is_err());
        let s = selector("arn:aws:ssm:us-east-1:000000000000:parameter/a/b:2").unwrap();
        assert_eq!((s.name, s.version), ("/a/b", Some(2)));
        let s = selector("arn:aws:ssm:us-east-1:000000000000:parameter/plain").unwrap();
        assert_eq!(s.name, "plain");
        assert!(check_name("/app/db/password").is_ok());
        assert!(check_name("plain").is_ok());
        assert!(check_name("a/b").is_err());
        assert!(check_name("/aws/x").is_err());
        assert!(check_name("ssm-x").is_err());
        assert!(check_name("/a b").is_err());
        assert!(check_label("prod"));
        assert!(!check_label("1prod"));
        assert!(!check_label("awsx"));
    }

    #[test]
    fn paths() {
        assert!(in_path("/a/b", "/a", false));
        assert!(!in_path("/a/b/c", "/a", false));
        assert!(in_path("/a/b/c", "/a", true));
        assert!(!in_path("/ab", "/a", true));
        assert!(in_path("/a/b", "/a/", false));
    }

    #[test]
    fn secure_strings_are_sealed_versioned_and_rewrapped() {
        let d = tempfile::tempdir().unwrap();
        let open = || {
            let k = Keyring::open(d.path()).unwrap();
            Ssm::open(d.path(), k, "us-east-1".into(), "000000000000".into()).unwrap()
        };
        let a = |v: Value| Args::parse(v.to_string().as_bytes()).unwrap();
        let s = open();
        s.handle(
            crate::Op::PutParameter,
            &a(json!({"Name": "/p", "Value": "very-secret-1", "Type": "SecureString"})),
            "u",
            1,
        )
        .unwrap();
        s.handle(
            crate::Op::PutParameter,
            &a(json!({"Name": "/p", "Value": "very-secret-2", "Overwrite": true})),
            "u",
            2,
        )
        .unwrap();
        for f in ["ssm.db", "ssm.db-wal"] {
            let b = std::fs::read(d.path().join(f)).unwrap_or_default();
            assert!(!b
                .windows(13)
                .any(|w| w == b"very-secret-1" || w == b"very-secret-2"));
        }
        let k = s.keyring.clone();
        k.rotate().unwrap();
        assert_eq!(s.rewrap(&k).unwrap(), 2);
        drop(s);
        let s = open();
        let g = s
            .handle(
                crate::Op::GetParameter,
                &a(json!({"Name": "/p:1", "WithDecryption": true})),
                "u",
                3,
            )
            .unwrap();
        assert_eq!(g["Parameter"]["Value"], "very-secret-1");
        let g = s
            .handle(crate::Op::GetParameter, &a(json!({"Name": "/p"})), "u", 3)
            .unwrap();
        assert_ne!(g["Parameter"]["Value"], "very-secret-2");
        assert_eq!(g["Parameter"]["Version"], 2);
    }
}
