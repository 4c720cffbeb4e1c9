//! Encryption at rest for Nimbus's secret-holding services (Secrets Manager
//! values, SSM `SecureString` parameters).
//!
//! * The keys live in `<data>/keys/keyring.json` (directory 0700, file 0600), a
//!   file of their own, never inside a database: copying a `.db` file does not
//!   copy what decrypts it.
//! * A record is sealed with AES-256-GCM (RustCrypto's `aes-gcm`) under the
//!   *current* key with a fresh 96-bit nonce and the caller's associated data (the
//!   record's identity: a sealed value moved to another record does not open). The
//!   sealed blob names its key: `NK1` ‖ key-id length ‖ key id ‖ nonce ‖ ciphertext+tag.
//! * [`Keyring::rotate`] adds a new key and makes it current; older keys still
//!   open what they sealed. Services register a re-encryption pass
//!   ([`Keyring::register_rewrap`]) that [`Keyring::rotate_and_rewrap`] runs after a
//!   rotation, and that they run themselves at start (a rotation made with the
//!   server stopped is applied then).
//!
//! One [`Keyring`] is shared per data dir within a process ([`Keyring::open`]).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

const MAGIC: &[u8; 3] = b"NK1";
const NONCE_LEN: usize = 12;

/// What can go wrong with the keyring. Messages never carry key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("keyring {path} is not valid: {message}")]
    Corrupt { path: String, message: String },
    #[error("no key {0} in the keyring")]
    UnknownKey(String),
    #[error("a sealed record is malformed")]
    Malformed,
    #[error("a sealed record failed authentication (wrong key or tampered)")]
    Tampered,
    #[error("the system random source failed: {0}")]
    Random(String),
}

pub type Result<T, E = KeyringError> = std::result::Result<T, E>;

#[derive(Serialize, Deserialize, Clone)]
struct KeyFile {
    current: String,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredKey {
    id: String,
    created_ms: i64,
    /// Base64 of the 32 key bytes.
    key: String,
}

/// A key's public facts (never its material).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KeyInfo {
    pub key_id: String,
    pub created_ms: i64,
    pub current: bool,
}

struct State {
    current: String,
    keys: HashMap<String, (i64, Aes256Gcm)>,
    order: Vec<String>,
}

/// A re-encryption pass: moves every record of one store to the current key and
/// says how many it re-sealed.
pub type Rewrap = Arc<dyn Fn(&Keyring) -> std::result::Result<u64, String> + Send + Sync>;

/// Checks a KMS key id (id, ARN or alias) the KMS service registered: `Err`
/// says why it cannot encrypt (missing, disabled, pending deletion).
pub type KmsCheck = Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

/// The data dir's keys.
pub struct Keyring {
    kms: RwLock<Option<KmsCheck>>,
    path: PathBuf,
    state: RwLock<State>,
    rewraps: Mutex<Vec<(&'static str, Rewrap)>>,
    /// Serialises rotations within the process.
    rotating: Mutex<()>,
}

/// What the re-encryption passes did: re-sealed records per store, and the
/// stores whose pass failed with why.
pub type RewrapOutcome = (Vec<(String, u64)>, Vec<(String, String)>);

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotateReport {
    pub key_id: String,
    pub previous_key_id: String,
    /// Re-sealed records per store.
    pub reencrypted: Vec<(String, u64)>,
    /// Stores whose pass failed (their records stay readable under the old key).
    pub failed: Vec<(String, String)>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Keyring>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Weak<Keyring>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// `<data>/keys/keyring.json`.
pub fn keyring_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("keyring.json")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeyringError::Random(e.to_string()))?;
    Ok(b)
}

fn new_key() -> Result<StoredKey> {
    let id: [u8; 8] = random()?;
    let key: [u8; 32] = random()?;
    Ok(StoredKey {
        id: format!("nk-{}", hex::encode(id)),
        created_ms: now_ms(),
        key: base64::engine::general_purpose::STANDARD.encode(key),
    })
}

impl Keyring {
    /// The keyring of `data_dir`, created (with its first key) if there is none;
    /// one shared instance per data dir in this process.
    pub fn open(data_dir: &Path) -> Result<Arc<Keyring>> {
        let path = keyring_path(data_dir);
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = reg.get(&path).and_then(Weak::upgrade) {
            return Ok(k);
        }
        let file = match read_file(&path)? {
            Some(f) => f,
            None => {
                let f = KeyFile {
                    current: String::new(),
                    keys: vec![new_key()?],
                };
                let f = KeyFile {
                    current: f.keys[0].id.clone(),
                    ..f
                };
                write_file(&path, &f)?;
                tracing::info!(path = %path.display(), key_id = %f.current, "created the data dir's keyring");
                f
            }
        };
        let k = Arc::new(Keyring {
            kms: RwLock::new(None),
            state: RwLock::new(state_of(&path, &file)?),
            path: path.clone(),
            rewraps: Mutex::new(Vec::new()),
            rotating: Mutex::new(()),
        });
        reg.insert(path, Arc::downgrade(&k));
        Ok(k)
    }

    /// The id of the key new records are sealed under.
    pub fn current_key_id(&self) -> String {
        self.read().current.clone()
    }

    /// Every key's id and age, oldest first (no material).
    pub fn keys(&self) -> Vec<KeyInfo> {
        let s = self.read();
        s.order
            .iter()
            .map(|id| KeyInfo {
                key_id: id.clone(),
                created_ms: s.keys[id].0,
                current: *id == s.current,
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Seal `plaintext` under the current key, bound to `aad` (the record's identity).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let s = self.read();
        let (_, cipher) = s
            .keys
            .get(&s.current)
            .ok_or_else(|| KeyringError::UnknownKey(s.current.clone()))?;
        let nonce: [u8; NONCE_LEN] = random()?;
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| KeyringError::Malformed)?;
        let id = s.current.as_bytes();
        let mut out = Vec::with_capacity(4 + id.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Open a sealed record with the key it names and the same `aad` it was sealed with.
    pub fn open_sealed(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let (id, rest) = split(sealed)?;
        let known = self.read().keys.contains_key(id);
        if !known {
            // Rotated by another process (`nimbus keys rotate --data-dir`): reload.
            self.reload()?;
        }
        let s = self.read();
        let (_, cipher) = s
            .keys
            .get(id)
            .ok_or_else(|| KeyringError::UnknownKey(id.to_string()))?;
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| KeyringError::Tampered)
    }

    /// Whether a sealed record is under a key other than the current one.
    pub fn needs_rewrap(&self, sealed: &[u8]) -> bool {
        split(sealed)
            .map(|(id, _)| id != self.read().current)
            .unwrap_or(false)
    }

    /// Re-seal a record under the current key (same `aad`); `None` if it already is.
    pub fn rewrap(&self, aad: &[u8], sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.needs_rewrap(sealed) {
            return Ok(None);
        }
        let plain = self.open_sealed(aad, sealed)?;
        self.seal(aad, &plain).map(Some)
    }

    fn reload(&self) -> Result<()> {
        if let Some(f) = read_file(&self.path)? {
            *self.state.write().unwrap_or_else(|p| p.into_inner()) = state_of(&self.path, &f)?;
        }
        Ok(())
    }

    /// Add a new key and make it current (re-reading the file first, so a rotation
    /// made by another process is kept). Returns the new key's id.
    pub fn rotate(&self) -> Result<String> {
        let _g = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = read_file(&self.path)?.ok_or_else(|| KeyringError::Corrupt {
            path: self.path.display().to_string(),
            message: "the keyring file disappeared".into(),
        })?;
        let k = new_key()?;
        f.current = k.id.clone();
        f.keys.push(k);
        write_file(&self.path, &f)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state_of(&self.path, &f)?;
        tracing::info!(key_id = %f.current, "keyring rotated");
        Ok(f.current)
    }

    /// The KMS of this data dir registers how to check a key id (`KmsKeyId` of a
    /// secret, `KeyId` of a `SecureString`).
    pub fn set_kms_check(&self, f: KmsCheck) {
        *self.kms.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// Whether a customer KMS key id can encrypt; `Ok` when no KMS is running.
    pub fn check_kms_key(&self, key: &str) -> std::result::Result<(), String> {
        let f = self.kms.read().unwrap_or_else(|p| p.into_inner()).clone();
        match f {
            Some(f) => f(key),
            None => Ok(()),
        }
    }

    /// Register a store's re-encryption pass, run by [`Keyring::rotate_and_rewrap`].
    pub fn register_rewrap(&self, store: &'static str, f: Rewrap) {
        let mut r = self.rewraps.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(n, _)| *n != store);
        r.push((store, f));
    }

    /// Run every registered re-encryption pass.
    pub fn rewrap_all(&self) -> RewrapOutcome {
        let passes: Vec<_> = self
            .rewraps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for (name, f) in passes {
            match f(self) {
                Ok(n) => ok.push((name.to_string(), n)),
                Err(e) => {
                    tracing::warn!(store = name, error = %e, "re-encryption pass failed");
                    failed.push((name.to_string(), e))
                }
            }
        }
        (ok, failed)
    }

    /// [`Keyring::rotate`], then every registered re-encryption pass.
    pub fn rotate_and_rewrap(&self) -> Result<RotateReport> {
        let previous = self.current_key_id();
        let key_id = self.rotate()?;
        let (reencrypted, failed) = self.rewrap_all();
        Ok(RotateReport {
            key_id,
            previous_key_id: previous,
            reencrypted,
            failed,
        })
    }
}

fn split(sealed: &[u8]) -> Result<(&str, &[u8])> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(KeyringError::Malformed)?;
    let (&n, rest) = rest.split_first().ok_or(KeyringError::Malformed)?;
    let n = n as usize;
    if rest.len() < n + NONCE_LEN + 16 {
        return Err(KeyringError::Malformed);
    }
    let id = std::str::from_utf8(&rest[..n]).map_err(|_| KeyringError::Malformed)?;
    Ok((id, &rest[n..]))
}

/// The key id a sealed record names, if it is one.
pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
    split(sealed).ok().map(|(id, _)| id)
}

fn state_of(path: &Path, f: &KeyFile) -> Result<State> {
    let corrupt = |m: String| KeyringError::Corrupt {
        path: path.display().to_string(),
        message: m,
    };
    let mut keys = HashMap::new();
    let mut order = Vec::new();
    for k in &f.keys {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&k.key)
            .map_err(|_| corrupt(format!("key {} is not base64", k.id)))?;
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| corrupt(format!("key {} is not 32 bytes", k.id)))?;
        if k.id.len() > 255 {
            return Err(corrupt("a key id is too long".into()));
        }
        keys.insert(k.id.clone(), (k.created_ms, cipher));
        order.push(k.id.clone());
    }
    if !keys.contains_key(&f.current) {
        return Err(corrupt(format!("the current key {} is missing", f.current)));
    }
    Ok(State {
        current: f.current.clone(),
        keys,
        order,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_file(path: &Path) -> Result<Option<KeyFile>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| KeyringError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Write atomically: a 0600 temp file, fsynced, renamed over, directory fsynced.
fn write_file(path: &Path, f: &KeyFile) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(
        ".keyring.{}.tmp",
        hex::encode(random::<6>().unwrap_or_default())
    ));
    let body = serde_json::to_vec_pretty(f).map_err(|e| KeyringError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&body).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_to_the_record() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path()).unwrap();
        let s = k.seal(b"rec-1", b"hunter2").unwrap();
        assert!(!s.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open_sealed(b"rec-1", &s).unwrap(), b"hunter2");
        assert!(matches!(
            k.open_sealed(b"rec-2", &s),
            Err(KeyringError::Tampered)
        ));
        let mut bad = s.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            k.open_sealed(b"rec-1", &bad),
            Err(KeyringError::Tampered)
        ));
        assert!(matches!(
            k.open_sealed(b"rec-1", b"junk"),
            Err(KeyringError::Malformed)
        ));
        assert_eq!(key_id_of(&s), Some(k.current_key_id().as_str()));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let _k = Keyring::open(d.path()).unwrap();
        let p = keyring_path(d.path());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn rotation_keeps_old_keys_and_rewraps() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path()).unwrap();
        let old_id = k.current_key_id();
        let s = k.seal(b"a", b"v1").unwrap();
        let store = Arc::new(Mutex::new(s.clone()));
        let st = store.clone();
        k.register_rewrap(
            "test",
            Arc::new(move |k: &Keyring| {
                let mut g = st.lock().unwrap();
                match k.rewrap(b"a", &g).map_err(|e| e.to_string())? {
                    Some(n) => {
                        *g = n;
                        Ok(1)
                    }
                    None => Ok(0),
                }
            }),
        );
        let r = k.rotate_and_rewrap().unwrap();
        assert_ne!(r.key_id, old_id);
        assert_eq!(r.previous_key_id, old_id);
        assert_eq!(r.reencrypted, vec![("test".to_string(), 1)]);
        let now = store.lock().unwrap().clone();
        assert_eq!(key_id_of(&now), Some(r.key_id.as_str()));
        // The old key still opens what it sealed.
        assert_eq!(k.open_sealed(b"a", &s).unwrap(), b"v1");
        assert_eq!(k.keys().len(), 2);
        assert_eq!(k.rewrap_all().0, vec![("test".to_string(), 0)]);
    }

    #[test]
    fn another_process_rotation_is_picked_up() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path()).unwrap();
        // Simulate another process: write a rotated file directly.
        let mut f = read_file(&keyring_path(d.path())).unwrap().unwrap();
        let nk = new_key().unwrap();
        f.current = nk.id.clone();
        f.keys.push(nk);
        write_file(&keyring_path(d.path()), &f).unwrap();
        // The other process seals under its new key.
        let other = Keyring {
            kms: RwLock::new(None),
            path: keyring_path(d.path()),
            state: RwLock::new(state_of(d.path(), &f).unwrap()),
            rewraps: Mutex::new(Vec::new()),
            rotating: Mutex::new(()),
        };
        let s = other.seal(b"x", b"y").unwrap();
        assert_eq!(k.open_sealed(b"x", &s).unwrap(), b"y");
        // And a rotation here keeps the other's key.
        k.rotate().unwrap();
        assert_eq!(k.keys().len(), 3);
    }
}
