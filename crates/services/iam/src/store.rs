//! IAM's state: roles, users, access keys, managed policies with versions and
//! STS sessions, durable in `<data>/iam.db` and held in memory for the
//! authoriser, which reads it on every request.
//!
//! Each entity is one row (`kind`, `name`, JSON) written in its own
//! transaction (WAL, `synchronous=FULL`) before the in-memory copy changes, so
//! an acknowledged change is on disk and a policy change is seen by the next
//! request, with no restart.

use nimbus_core::{Principal, ACCOUNT_ID};
use nimbus_policy::{Malformed, Policy};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// An IAM error: its code, status and message as IAM sends them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct IamError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl IamError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn no_such(message: impl Into<String>) -> Self {
        Self::new(404, "NoSuchEntity", message)
    }
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(409, "EntityAlreadyExists", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "DeleteConflict", message)
    }
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(409, "LimitExceeded", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidInput", message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationError", message)
    }
    pub fn malformed(m: Malformed) -> Self {
        Self::new(400, "MalformedPolicyDocument", m.0)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "iam store failure");
        Self::new(
            500,
            "ServiceFailure",
            "The request processing has failed because of an unknown error.",
        )
    }
}

pub type Result<T> = std::result::Result<T, IamError>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub id: String,
    pub path: String,
    pub trust_policy: String,
    #[serde(default)]
    pub description: Option<String>,
    pub max_session_duration: u32,
    pub created_ms: i64,
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// The permissions boundary: a managed policy's ARN.
    #[serde(default)]
    pub boundary: Option<String>,
}

impl Role {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT_ID}:role{}{}", self.path, self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub id: String,
    pub path: String,
    pub created_ms: i64,
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// The permissions boundary: a managed policy's ARN.
    #[serde(default)]
    pub boundary: Option<String>,
}

impl User {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT_ID}:user{}{}", self.path, self.name)
    }
}

/// An IAM group: its policies apply to its members.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub id: String,
    pub path: String,
    pub created_ms: i64,
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
    /// Member user names, in the order they were added.
    #[serde(default)]
    pub users: Vec<String>,
}

impl Group {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT_ID}:group{}{}", self.path, self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub user: String,
    pub secret: String,
    /// `Active` or `Inactive`.
    pub status: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyVersion {
    pub id: String,
    pub document: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub name: String,
    pub id: String,
    pub path: String,
    #[serde(default)]
    pub description: Option<String>,
    pub default_version: String,
    pub versions: Vec<PolicyVersion>,
    pub next_version: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// AWS managed (`arn:aws:iam::aws:policy/…`): read-only.
    #[serde(default)]
    pub aws_managed: bool,
}

impl ManagedPolicy {
    pub fn arn(&self) -> String {
        if self.aws_managed {
            format!("arn:aws:iam::aws:policy{}{}", self.path, self.name)
        } else {
            format!("arn:aws:iam::{ACCOUNT_ID}:policy{}{}", self.path, self.name)
        }
    }
    pub fn default_document(&self) -> &str {
        self.versions
            .iter()
            .find(|v| v.id == self.default_version)
            .map(|v| v.document.as_str())
            .unwrap_or("")
    }
}

/// Temporary credentials STS issued.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    pub access_key_id: String,
    pub secret: String,
    pub token: String,
    /// `role` + `session` for AssumeRole, `user` for GetSessionToken.
    pub role: Option<String>,
    pub session_name: Option<String>,
    pub user: Option<String>,
    pub expires_ms: i64,
    /// The session policy passed to AssumeRole, if any.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub policy_arns: Vec<String>,
    /// The federated user's name, for GetFederationToken (`user`: who asked;
    /// none: the root).
    #[serde(default)]
    pub federated: Option<String>,
}

impl Session {
    pub fn principal(&self) -> Principal {
        match (&self.role, &self.session_name, &self.user) {
            _ if self.federated.is_some() => Principal::FederatedUser {
                name: self.federated.clone().unwrap_or_default(),
                user: self.user.clone(),
            },
            (Some(r), Some(s), _) => Principal::AssumedRole {
                role: r.clone(),
                session: s.clone(),
            },
            (_, _, Some(u)) => Principal::User(u.clone()),
            _ => Principal::Root,
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub roles: BTreeMap<String, Role>,
    pub users: BTreeMap<String, User>,
    pub keys: BTreeMap<String, AccessKey>,
    /// By ARN.
    pub policies: BTreeMap<String, ManagedPolicy>,
    pub sessions: BTreeMap<String, Session>,
    pub groups: BTreeMap<String, Group>,
}

/// What the authoriser evaluates a principal with.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The account root or a configured key's user that is not an IAM user:
    /// allowed everything.
    Admin,
    /// An IAM principal's policies (name, parsed), and session policies.
    Policies {
        policies: Vec<(String, Arc<Policy>)>,
        session: Vec<(String, Arc<Policy>)>,
    },
    /// A role session whose role is not in IAM.
    MissingRole(String),
}

/// What the account's administrators may do.
const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
/// A session policy that allows no action (a federated user given none).
const ALLOW_NOTHING: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"*","Resource":"*"}]}"#;

/// The store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    state: Arc<RwLock<State>>,
    /// Parsed policies by document text.
    parsed: Arc<Mutex<HashMap<String, Arc<Policy>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

const KINDS: [&str; 6] = ["role", "user", "key", "policy", "session", "group"];

impl Store {
    /// Open (or create) `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Store> {
        let conn = nimbus_store::open_durable(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entities (
                kind TEXT NOT NULL, name TEXT NOT NULL, json TEXT NOT NULL,
                PRIMARY KEY (kind, name));",
        )?;
        let mut state = State::default();
        {
            let mut stmt = conn.prepare("SELECT kind, name, json FROM entities")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (kind, name, json) = row?;
                let bad = |e: serde_json::Error| {
                    tracing::error!(kind, name, error = %e, "unreadable iam.db row skipped");
                };
                match kind.as_str() {
                    "role" => match serde_json::from_str(&json) {
                        Ok(v) => {
                            state.roles.insert(name, v);
                        }
                        Err(e) => bad(e),
                    },
                    "user" => match serde_json::from_str(&json) {
                        Ok(v) => {
                            state.users.insert(name, v);
                        }
                        Err(e) => bad(e),
                    },
                    "key" => match serde_json::from_str(&json) {
                        Ok(v) => {
                            state.keys.insert(name, v);
                        }
                        Err(e) => bad(e),
                    },
                    "policy" => match serde_json::from_str(&json) {
                        Ok(v) => {
                            state.policies.insert(name, v);
                        }
                        Err(e) => bad(e),
                    },
                    "session" => match serde_json::from_str(&json) {
                        Ok(v) => {
                            state.sessions.insert(name, v);
                        }
                        Err(e) => bad(e),
                    },
                    "group" => match serde_json::from_str(&json) {
                        Ok(v) => {
                            state.groups.insert(name, v);
                        }
                        Err(e) => bad(e),
                    },
                    _ => {}
                }
            }
        }
        for p in crate::managed::aws_managed() {
            state.policies.entry(p.arn()).or_insert(p);
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            state: Arc::new(RwLock::new(state)),
            parsed: Arc::default(),
        })
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the state under the write lock; persist the rows it returns
    /// (`Some(json)` upserts, `None` deletes) in one transaction before the
    /// change becomes visible. On error nothing changes.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(T, Vec<Row>)>,
    ) -> Result<T> {
        let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        // Work on a copy: the real state changes only once the rows are durable.
        let mut copy = State {
            roles: guard.roles.clone(),
            users: guard.users.clone(),
            keys: guard.keys.clone(),
            policies: guard.policies.clone(),
            sessions: guard.sessions.clone(),
            groups: guard.groups.clone(),
        };
        let (out, rows) = f(&mut copy)?;
        {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction().map_err(IamError::internal)?;
            for r in &rows {
                debug_assert!(KINDS.contains(&r.kind));
                match &r.json {
                    Some(j) => tx.execute(
                        "INSERT OR REPLACE INTO entities (kind, name, json) VALUES (?1, ?2, ?3)",
                        params![r.kind, r.name, j],
                    ),
                    None => tx.execute(
                        "DELETE FROM entities WHERE kind = ?1 AND name = ?2",
                        params![r.kind, r.name],
                    ),
                }
                .map_err(IamError::internal)?;
            }
            tx.commit().map_err(IamError::internal)?;
        }
        *guard = copy;
        Ok(out)
    }

    /// A parsed policy, cached by its text (documents in the store were
    /// validated when written).
    pub fn parsed(&self, text: &str, kind: nimbus_policy::Kind) -> Option<Arc<Policy>> {
        let mut cache = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(text) {
            return Some(p.clone());
        }
        let p = Arc::new(Policy::parse(text, kind).ok()?);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(text.to_owned(), p.clone());
        Some(p)
    }

    /// The policies a principal is evaluated with. `access_key_id` finds an
    /// STS session's session policies.
    pub fn identity(&self, principal: &Principal, access_key_id: Option<&str>) -> Identity {
        let st = self.read();
        let id = nimbus_policy::Kind::Identity;
        let managed = |arns: &[String], out: &mut Vec<(String, Arc<Policy>)>| {
            for a in arns {
                if let Some(p) = st.policies.get(a) {
                    if let Some(parsed) = self.parsed(p.default_document(), id) {
                        out.push((a.clone(), parsed));
                    }
                }
            }
        };
        let mut session = vec![];
        if let Some(s) = access_key_id.and_then(|k| st.sessions.get(k)) {
            if let Some(p) = s.policy.as_deref().and_then(|t| self.parsed(t, id)) {
                session.push(("session policy".to_owned(), p));
            }
            managed(&s.policy_arns, &mut session);
        }
        match principal {
            // Within what the user (or root) who asked may do, and only what
            // its session policies allow: none passed, nothing allowed.
            Principal::FederatedUser { user, .. } => {
                let mut policies = vec![];
                match user.as_deref().and_then(|u| st.users.get(u)) {
                    Some(u) => {
                        for (n, text) in &u.inline {
                            if let Some(p) = self.parsed(text, id) {
                                policies.push((format!("inline policy {n} of user {}", u.name), p));
                            }
                        }
                        managed(&u.attached, &mut policies);
                        self.group_policies(&st, &u.name, &mut policies);
                    }
                    // The root, or a configured key's user: the account's admins.
                    None => {
                        if let Some(p) = self.parsed(ALLOW_ALL, id) {
                            policies.push(("the account's administrator".to_owned(), p));
                        }
                    }
                }
                if session.is_empty() {
                    if let Some(p) = self.parsed(ALLOW_NOTHING, id) {
                        session.push(("no session policy".to_owned(), p));
                    }
                }
                Identity::Policies { policies, session }
            }
            Principal::Root => Identity::Admin,
            Principal::User(name) => match st.users.get(name) {
                None => Identity::Admin,
                Some(u) => {
                    let mut policies = vec![];
                    for (n, text) in &u.inline {
                        if let Some(p) = self.parsed(text, id) {
                            policies.push((format!("inline policy {n} of user {}", u.name), p));
                        }
                    }
                    managed(&u.attached, &mut policies);
                    self.group_policies(&st, &u.name, &mut policies);
                    Identity::Policies { policies, session }
                }
            },
            Principal::AssumedRole { role, .. } => match st.roles.get(role) {
                None => Identity::MissingRole(role.clone()),
                Some(r) => {
                    let mut policies = vec![];
                    for (n, text) in &r.inline {
                        if let Some(p) = self.parsed(text, id) {
                            policies.push((format!("inline policy {n} of role {}", r.name), p));
                        }
                    }
                    managed(&r.attached, &mut policies);
                    Identity::Policies { policies, session }
                }
            },
        }
    }

    /// The inline and attached policies of the groups `user` belongs to.
    fn group_policies(&self, st: &State, user: &str, out: &mut Vec<(String, Arc<Policy>)>) {
        let id = nimbus_policy::Kind::Identity;
        for g in st
            .groups
            .values()
            .filter(|g| g.users.iter().any(|u| u == user))
        {
            for (n, text) in &g.inline {
                if let Some(p) = self.parsed(text, id) {
                    out.push((format!("inline policy {n} of group {}", g.name), p));
                }
            }
            for a in &g.attached {
                if let Some(p) = st.policies.get(a) {
                    if let Some(parsed) = self.parsed(p.default_document(), id) {
                        out.push((a.clone(), parsed));
                    }
                }
            }
        }
    }

    /// The permissions boundary a principal is evaluated with (its role's or
    /// user's; a federated user's is the asking user's), by name and parsed.
    pub fn boundary(&self, principal: &Principal) -> Option<(String, Arc<Policy>)> {
        let st = self.read();
        let arn = match principal {
            Principal::AssumedRole { role, .. } => st.roles.get(role)?.boundary.clone()?,
            Principal::User(u) | Principal::FederatedUser { user: Some(u), .. } => {
                st.users.get(u)?.boundary.clone()?
            }
            _ => return None,
        };
        // A boundary whose policy is gone allows nothing (never widens).
        let doc = st
            .policies
            .get(&arn)
            .map(|p| p.default_document().to_owned())
            .unwrap_or_else(|| ALLOW_NOTHING.to_owned());
        drop(st);
        let p = self.parsed(&doc, nimbus_policy::Kind::Identity)?;
        Some((format!("permissions boundary {arn}"), p))
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.read().roles.get(name).cloned()
    }

    /// Whether a managed policy of that ARN exists.
    pub fn has_policy(&self, arn: &str) -> bool {
        self.read().policies.contains_key(arn)
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<User> {
        self.read().users.get(name).cloned()
    }

    /// Every STS session and IAM access key, for registering in the key ring.
    pub fn credentials(&self) -> (Vec<AccessKey>, Vec<Session>) {
        let st = self.read();
        (
            st.keys.values().cloned().collect(),
            st.sessions.values().cloned().collect(),
        )
    }

    /// A session by access key id.
    pub fn session(&self, access_key_id: &str) -> Option<Session> {
        self.read().sessions.get(access_key_id).cloned()
    }

    /// Record an STS session.
    pub fn put_session(&self, s: Session) -> Result<()> {
        self.write(|st| {
            let row = Row::put("session", &s.access_key_id, &s);
            st.sessions.insert(s.access_key_id.clone(), s);
            Ok(((), vec![row]))
        })
    }

    /// Delete sessions that expired before `now_ms`; returns their key ids.
    pub fn sweep_sessions(&self, now_ms: i64) -> Result<Vec<String>> {
        self.write(|st| {
            let gone: Vec<String> = st
                .sessions
                .values()
                .filter(|s| s.expires_ms <= now_ms)
                .map(|s| s.access_key_id.clone())
                .collect();
            let rows = gone.iter().map(|k| Row::delete("session", k)).collect();
            for k in &gone {
                st.sessions.remove(k);
            }
            Ok((gone, rows))
        })
    }
}

/// One row to write (`json: None` deletes it).
pub(crate) struct Row {
    pub kind: &'static str,
    pub name: String,
    pub json: Option<String>,
}

impl Row {
    pub fn put<T: Serialize>(kind: &'static str, name: &str, v: &T) -> Row {
        Row {
            kind,
            name: name.to_owned(),
            json: Some(serde_json::to_string(v).expect("entities serialise")),
        }
    }
    pub fn delete(kind: &'static str, name: &str) -> Row {
        Row {
            kind,
            name: name.to_owned(),
            json: None,
        }
    }
}

/// RFC 4648 base32 (the alphabet of AWS ids).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A random id: `prefix` and `n` base32 characters.
pub fn random_id(prefix: &str, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the system random source");
    let mut s = String::from(prefix);
    s.push_str(&base32(&bytes)[..n]);
    s
}

/// A random secret of 40 characters (base64 of 30 random bytes).
pub fn random_secret(n_bytes: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n_bytes];
    getrandom::fill(&mut bytes).expect("the system random source");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
