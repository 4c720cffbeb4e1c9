//! KMS keys and aliases over `<data>/kms.db`. A key's 256-bit material is sealed by
//! the data dir's keyring; `Encrypt` seals data under the key's material with
//! AES-256-GCM, the encryption context as associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use http::StatusCode;
use nimbus_keyring::Keyring;
use nimbus_protocol::AwsError;
use nimbus_store::migrate::{Migration, Schema, Step};
use nimbus_svc_secretsmanager::args::Args;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub static SCHEMA: Schema = Schema {
    file: "kms.db",
    migrations: &[Migration {
        name: "keys (material sealed by the keyring) and aliases",
        step: Step::Sql(
            "CREATE TABLE kms_keys (
                key_id   TEXT PRIMARY KEY,
                meta     TEXT NOT NULL,
                ring_key TEXT NOT NULL,
                sealed   BLOB NOT NULL
            );
            CREATE TABLE kms_aliases (
                name   TEXT PRIMARY KEY,
                key_id TEXT NOT NULL
            );",
        ),
    }],
};

const MAGIC: &[u8; 4] = b"NKM1";
const DAY_MS: i64 = 86_400_000;

pub fn err(code: &'static str, msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, code, msg)
}
fn validation(msg: impl Into<String>) -> AwsError {
    err("ValidationException", msg)
}
fn internal(e: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %e, "kms store failure");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "KMSInternalException",
        "An internal error occurred.",
    )
}
fn missing(name: &str) -> AwsError {
    validation(format!(
        "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
    ))
}
fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct KeyMeta {
    pub key_id: String,
    pub description: String,
    pub created_ms: i64,
    pub enabled: bool,
    pub delete_at_ms: Option<i64>,
    pub tags: Vec<(String, String)>,
}

struct Key {
    meta: KeyMeta,
    cipher: Aes256Gcm,
}

#[derive(Default)]
pub struct Counters {
    pub encrypts: AtomicU64,
    pub decrypts: AtomicU64,
    pub data_keys: AtomicU64,
}

struct Inner {
    conn: Connection,
    keys: BTreeMap<String, Key>,
    aliases: BTreeMap<String, String>,
}

pub struct Kms {
    inner: Mutex<Inner>,
    keyring: Arc<Keyring>,
    region: String,
    account: String,
    pub counters: Counters,
}

fn aad(key_id: &str) -> Vec<u8> {
    format!("kms\0{key_id}").into_bytes()
}

/// The encryption context as AEAD associated data: its pairs sorted by key.
fn context_aad(ctx: Option<&Map<String, Value>>) -> Result<Vec<u8>, AwsError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in ctx.into_iter().flatten() {
        let v = v
            .as_str()
            .ok_or_else(|| validation("EncryptionContext values must be strings."))?;
        pairs.push((k.clone(), v.to_string()));
    }
    pairs.sort();
    Ok(serde_json::to_vec(&pairs).unwrap_or_default())
}

fn random<const N: usize>() -> Result<[u8; N], AwsError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(internal)?;
    Ok(b)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Kms {
    pub fn open(
        data_dir: &std::path::Path,
        keyring: Arc<Keyring>,
        region: String,
        account: String,
    ) -> Result<Self, String> {
        let conn = nimbus_store::open_migrated(&data_dir.join("kms.db"), &SCHEMA)
            .map_err(|e| e.to_string())?;
        let mut keys = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        {
            let mut st = conn
                .prepare("SELECT key_id, meta, sealed FROM kms_keys")
                .map_err(|e| e.to_string())?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .map_err(|e| e.to_string())?;
            for row in rows {
                let (id, meta, sealed) = row.map_err(|e| e.to_string())?;
                let meta: KeyMeta = serde_json::from_str(&meta).map_err(|e| e.to_string())?;
                let material = keyring
                    .open_sealed(&aad(&id), &sealed)
                    .map_err(|e| e.to_string())?;
                let cipher = Aes256Gcm::new_from_slice(&material).map_err(|e| e.to_string())?;
                keys.insert(id, Key { meta, cipher });
            }
            let mut st = conn
                .prepare("SELECT name, key_id FROM kms_aliases")
                .map_err(|e| e.to_string())?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| e.to_string())?;
            for row in rows {
                let (n, k) = row.map_err(|e| e.to_string())?;
                aliases.insert(n, k);
            }
        }
        Ok(Self {
            inner: Mutex::new(Inner {
                conn,
                keys,
                aliases,
            }),
            keyring,
            region,
            account,
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arn(&self, id: &str) -> String {
        format!("arn:aws:kms:{}:{}:key/{id}", self.region, self.account)
    }

    /// Re-seal every key's material not under the keyring's current key.
    pub fn rewrap(&self, keyring: &Keyring) -> Result<u64, String> {
        let g = self.lock();
        let current = keyring.current_key_id();
        let rows: Vec<(String, Vec<u8>)> = {
            let mut st = g
                .conn
                .prepare("SELECT key_id, sealed FROM kms_keys WHERE ring_key != ?1")
                .map_err(|e| e.to_string())?;
            let rows = st
                .query_map(params![current], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| e.to_string())?;
            rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?
        };
        let tx = g.conn.unchecked_transaction().map_err(|e| e.to_string())?;
        let mut n = 0;
        for (id, sealed) in rows {
            if let Some(new) = keyring
                .rewrap(&aad(&id), &sealed)
                .map_err(|e| e.to_string())?
            {
                let rk = nimbus_keyring::key_id_of(&new)
                    .unwrap_or_default()
                    .to_string();
                tx.execute(
                    "UPDATE kms_keys SET ring_key = ?1, sealed = ?2 WHERE key_id = ?3",
                    params![rk, new, id],
                )
                .map_err(|e| e.to_string())?;
                n += 1;
            }
        }
        tx.commit().map_err(|e| e.to_string())?;
        Ok(n)
    }

    /// Remove keys whose deletion window has passed (and their aliases).
    fn purge_due(&self, g: &mut Inner, now: i64) -> Result<(), AwsError> {
        let due: Vec<String> = g
            .keys
            .values()
            .filter(|k| k.meta.delete_at_ms.is_some_and(|t| t <= now))
            .map(|k| k.meta.key_id.clone())
            .collect();
        for id in due {
            let tx = g.conn.unchecked_transaction().map_err(internal)?;
            tx.execute("DELETE FROM kms_keys WHERE key_id = ?1", params![id])
                .map_err(internal)?;
            tx.execute("DELETE FROM kms_aliases WHERE key_id = ?1", params![id])
                .map_err(internal)?;
            tx.commit().map_err(internal)?;
            g.keys.remove(&id);
            g.aliases.retain(|_, k| *k != id);
            tracing::info!(key = %id, "kms key deleted at the end of its waiting period");
        }
        Ok(())
    }

    /// The key id a `KeyId` (id, key ARN, alias name or alias ARN) names.
    fn resolve(&self, g: &Inner, key: &str) -> Result<String, AwsError> {
        let not_found = || err("NotFoundException", format!("Key '{key}' does not exist"));
        let alias = if let Some(a) = key.strip_prefix("alias/") {
            Some(format!("alias/{a}"))
        } else if key.starts_with("arn:") && key.contains(":alias/") {
            key.split_once(":alias/").map(|(_, a)| format!("alias/{a}"))
        } else {
            None
        };
        if let Some(a) = alias {
            return g.aliases.get(&a).cloned().ok_or_else(|| {
                err(
                    "NotFoundException",
                    format!("Alias {} is not found.", self.alias_arn(&a)),
                )
            });
        }
        let id = key.rsplit_once(":key/").map_or(key, |(_, id)| id);
        if g.keys.contains_key(id) {
            Ok(id.to_string())
        } else {
            Err(not_found())
        }
    }

    fn alias_arn(&self, a: &str) -> String {
        format!("arn:aws:kms:{}:{}:{a}", self.region, self.account)
    }

    fn usable<'g>(&self, g: &'g Inner, key: &str) -> Result<&'g Key, AwsError> {
        let id = self.resolve(g, key)?;
        let k = &g.keys[&id];
        if k.meta.delete_at_ms.is_some() {
            return Err(err(
                "KMSInvalidStateException",
                format!("{} is pending deletion.", self.arn(&id)),
            ));
        }
        if !k.meta.enabled {
            return Err(err(
                "DisabledException",
                format!("{} is disabled.", self.arn(&id)),
            ));
        }
        Ok(k)
    }

    fn metadata(&self, k: &KeyMeta) -> Value {
        let mut m = json!({
            "AWSAccountId": self.account,
            "KeyId": k.key_id,
            "Arn": self.arn(&k.key_id),
            "CreationDate": secs(k.created_ms),
            "Enabled": k.enabled && k.delete_at_ms.is_none(),
            "Description": k.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": if k.delete_at_ms.is_some() { "PendingDeletion" } else if k.enabled { "Enabled" } else { "Disabled" },
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": false,
        });
        if let Some(t) = k.delete_at_ms {
            m["DeletionDate"] = secs(t);
        }
        m
    }

    fn save(&self, g: &Inner, k: &KeyMeta) -> Result<(), AwsError> {
        g.conn
            .execute(
                "UPDATE kms_keys SET meta = ?1 WHERE key_id = ?2",
                params![serde_json::to_string(k).unwrap_or_default(), k.key_id],
            )
            .map_err(internal)?;
        Ok(())
    }

    pub fn handle(&self, op: crate::Op, a: &Args, now: i64) -> Result<Value, AwsError> {
        use crate::Op;
        {
            let mut g = self.lock();
            self.purge_due(&mut g, now)?;
        }
        match op {
            Op::CreateKey => self.create_key(a, now),
            Op::DescribeKey => {
                let g = self.lock();
                let id = self.resolve(&g, a.req_str("KeyId", missing)?)?;
                Ok(json!({"KeyMetadata": self.metadata(&g.keys[&id].meta)}))
            }
            Op::ListKeys => {
                let g = self.lock();
                let keys: Vec<Value> = g
                    .keys
                    .keys()
                    .map(|id| json!({"KeyId": id, "KeyArn": self.arn(id)}))
                    .collect();
                Ok(json!({"Keys": keys, "Truncated": false}))
            }
            Op::EnableKey | Op::DisableKey => {
                let mut g = self.lock();
                let id = self.resolve(&g, a.req_str("KeyId", missing)?)?;
                let k = g
                    .keys
                    .get_mut(&id)
                    .ok_or_else(|| internal("key vanished"))?;
                if k.meta.delete_at_ms.is_some() {
                    return Err(err(
                        "KMSInvalidStateException",
                        format!("{} is pending deletion.", self.arn(&id)),
                    ));
                }
                k.meta.enabled = op == Op::EnableKey;
                let meta = k.meta.clone();
                self.save(&g, &meta)?;
                Ok(json!({}))
            }
            Op::ScheduleKeyDeletion => {
                let days = a.i64("PendingWindowInDays")?.unwrap_or(30);
                if !(7..=30).contains(&days) {
                    return Err(validation("PendingWindowInDays must be between 7 and 30."));
                }
                let mut g = self.lock();
                let id = self.resolve(&g, a.req_str("KeyId", missing)?)?;
                let k = g
                    .keys
                    .get_mut(&id)
                    .ok_or_else(|| internal("key vanished"))?;
                if k.meta.delete_at_ms.is_some() {
                    return Err(err(
                        "KMSInvalidStateException",
                        format!("{} is pending deletion.", self.arn(&id)),
                    ));
                }
                k.meta.delete_at_ms = Some(now + days * DAY_MS);
                let meta = k.meta.clone();
                self.save(&g, &meta)?;
                Ok(
                    json!({"KeyId": self.arn(&id), "DeletionDate": secs(now + days * DAY_MS), "KeyState": "PendingDeletion", "PendingWindowInDays": days}),
                )
            }
            Op::CancelKeyDeletion => {
                let mut g = self.lock();
                let id = self.resolve(&g, a.req_str("KeyId", missing)?)?;
                let k = g
                    .keys
                    .get_mut(&id)
                    .ok_or_else(|| internal("key vanished"))?;
                if k.meta.delete_at_ms.is_none() {
                    return Err(err(
                        "KMSInvalidStateException",
                        format!("{} is not pending deletion.", self.arn(&id)),
                    ));
                }
                k.meta.delete_at_ms = None;
                k.meta.enabled = false;
                let meta = k.meta.clone();
                self.save(&g, &meta)?;
                Ok(json!({"KeyId": self.arn(&id)}))
            }
            Op::Encrypt => {
                let plain = self.blob(a, "Plaintext")?;
                if plain.is_empty() || plain.len() > 4096 {
                    return Err(validation("Plaintext must be between 1 and 4096 bytes."));
                }
                let key = a.req_str("KeyId", missing)?;
                let (id, blob) = self.seal(key, &plain, a.object("EncryptionContext")?)?;
                self.counters.encrypts.fetch_add(1, Ordering::Relaxed);
                Ok(
                    json!({"CiphertextBlob": b64(&blob), "KeyId": self.arn(&id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
                )
            }
            Op::Decrypt => {
                let blob = self.blob(a, "CiphertextBlob")?;
                let (id, plain) =
                    self.unseal(&blob, a.str("KeyId")?, a.object("EncryptionContext")?)?;
                self.counters.decrypts.fetch_add(1, Ordering::Relaxed);
                Ok(
                    json!({"KeyId": self.arn(&id), "Plaintext": b64(&plain), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
                )
            }
            Op::GenerateDataKey | Op::GenerateDataKeyWithoutPlaintext => {
                let n = match (a.str("KeySpec")?, a.i64("NumberOfBytes")?) {
                    (Some(_), Some(_)) => {
                        return Err(validation("Specify either KeySpec or NumberOfBytes, not both."))
                    }
                    (Some("AES_256"), None) => 32,
                    (Some("AES_128"), None) => 16,
                    (Some(s), None) => {
                        return Err(validation(format!(
                            "1 validation error detected: Value '{s}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
                        )))
                    }
                    (None, Some(n)) if (1..=1024).contains(&n) => n as usize,
                    (None, Some(_)) => return Err(validation("NumberOfBytes must be between 1 and 1024.")),
                    (None, None) => {
                        return Err(validation("Specify either KeySpec or NumberOfBytes."))
                    }
                };
                let mut dk = vec![0u8; n];
                getrandom::fill(&mut dk).map_err(internal)?;
                let key = a.req_str("KeyId", missing)?;
                let (id, blob) = self.seal(key, &dk, a.object("EncryptionContext")?)?;
                self.counters.data_keys.fetch_add(1, Ordering::Relaxed);
                let mut out = json!({"CiphertextBlob": b64(&blob), "KeyId": self.arn(&id)});
                if op == Op::GenerateDataKey {
                    out["Plaintext"] = json!(b64(&dk));
                }
                Ok(out)
            }
            Op::GenerateRandom => {
                let n = a.i64("NumberOfBytes")?.unwrap_or(32);
                if !(1..=1024).contains(&n) {
                    return Err(validation("NumberOfBytes must be between 1 and 1024."));
                }
                let mut b = vec![0u8; n as usize];
                getrandom::fill(&mut b).map_err(internal)?;
                Ok(json!({"Plaintext": b64(&b)}))
            }
            Op::CreateAlias => self.create_alias(a),
            Op::UpdateAlias => {
                let name = a.req_str("AliasName", missing)?.to_string();
                let mut g = self.lock();
                if !g.aliases.contains_key(&name) {
                    return Err(err(
                        "NotFoundException",
                        format!("Alias {} is not found.", self.alias_arn(&name)),
                    ));
                }
                let target = self.resolve(&g, a.req_str("TargetKeyId", missing)?)?;
                g.conn
                    .execute(
                        "UPDATE kms_aliases SET key_id = ?1 WHERE name = ?2",
                        params![target, name],
                    )
                    .map_err(internal)?;
                g.aliases.insert(name, target);
                Ok(json!({}))
            }
            Op::DeleteAlias => {
                let name = a.req_str("AliasName", missing)?.to_string();
                let mut g = self.lock();
                if g.aliases.remove(&name).is_none() {
                    return Err(err(
                        "NotFoundException",
                        format!("Alias {} is not found.", self.alias_arn(&name)),
                    ));
                }
                g.conn
                    .execute("DELETE FROM kms_aliases WHERE name = ?1", params![name])
                    .map_err(internal)?;
                Ok(json!({}))
            }
            Op::ListAliases => {
                let g = self.lock();
                let only = match a.str("KeyId")? {
                    Some(k) => Some(self.resolve(&g, k)?),
                    None => None,
                };
                let list: Vec<Value> = g
                    .aliases
                    .iter()
                    .filter(|(_, k)| only.as_deref().is_none_or(|o| o == k.as_str()))
                    .map(|(n, k)| json!({"AliasName": n, "AliasArn": self.alias_arn(n), "TargetKeyId": k}))
                    .collect();
                Ok(json!({"Aliases": list, "Truncated": false}))
            }
            _ => Err(AwsError::not_implemented("kms", op.name())),
        }
    }

    fn blob(&self, a: &Args, name: &str) -> Result<Vec<u8>, AwsError> {
        let s = a.req_str(name, missing)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| {
                err(
                    "SerializationException",
                    format!("{name} is not valid base64."),
                )
            })
    }

    fn create_key(&self, a: &Args, now: i64) -> Result<Value, AwsError> {
        let usage = a.str("KeyUsage")?.unwrap_or("ENCRYPT_DECRYPT");
        let spec = a
            .str("KeySpec")?
            .or(a.str("CustomerMasterKeySpec")?)
            .unwrap_or("SYMMETRIC_DEFAULT");
        if usage != "ENCRYPT_DECRYPT" || spec != "SYMMETRIC_DEFAULT" {
            return Err(err(
                "UnsupportedOperationException",
                "Nimbus's KMS has symmetric ENCRYPT_DECRYPT keys (SYMMETRIC_DEFAULT) only.",
            ));
        }
        let description = a.str("Description")?.unwrap_or("").to_string();
        let tags: Vec<(String, String)> = match a.array("Tags")? {
            Some(t) => t
                .iter()
                .map(|x| {
                    let k = x.get("TagKey").and_then(Value::as_str);
                    let v = x.get("TagValue").and_then(Value::as_str).unwrap_or("");
                    k.map(|k| (k.to_string(), v.to_string()))
                })
                .collect::<Option<_>>()
                .ok_or_else(|| validation("Tags must be {TagKey, TagValue} pairs."))?,
            None => vec![],
        };
        let material: [u8; 32] = random()?;
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = self.keyring.seal(&aad(&id), &material).map_err(internal)?;
        let rk = nimbus_keyring::key_id_of(&sealed)
            .unwrap_or_default()
            .to_string();
        let meta = KeyMeta {
            key_id: id.clone(),
            description,
            created_ms: now,
            enabled: true,
            delete_at_ms: None,
            tags,
        };
        let mut g = self.lock();
        g.conn
            .execute(
                "INSERT INTO kms_keys (key_id, meta, ring_key, sealed) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id,
                    serde_json::to_string(&meta).unwrap_or_default(),
                    rk,
                    sealed
                ],
            )
            .map_err(internal)?;
        let out = json!({"KeyMetadata": self.metadata(&meta)});
        let cipher = Aes256Gcm::new_from_slice(&material).map_err(internal)?;
        g.keys.insert(id, Key { meta, cipher });
        Ok(out)
    }

    fn create_alias(&self, a: &Args) -> Result<Value, AwsError> {
        let name = a.req_str("AliasName", missing)?.to_string();
        let valid = name.strip_prefix("alias/").is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 250
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
        });
        if !valid {
            return Err(validation(
                "Alias must start with the prefix \"alias/\" and use letters, digits, /, _ and -.",
            ));
        }
        if name.starts_with("alias/aws/") {
            return Err(err(
                "NotAuthorizedException",
                "Aliases beginning with alias/aws/ are reserved for AWS managed keys.",
            ));
        }
        let mut g = self.lock();
        if g.aliases.contains_key(&name) {
            return Err(err(
                "AlreadyExistsException",
                format!(
                    "An alias with the name {} already exists",
                    self.alias_arn(&name)
                ),
            ));
        }
        let target = self.resolve(&g, a.req_str("TargetKeyId", missing)?)?;
        g.conn
            .execute(
                "INSERT INTO kms_aliases (name, key_id) VALUES (?1, ?2)",
                params![name, target],
            )
            .map_err(internal)?;
        g.aliases.insert(name, target);
        Ok(json!({}))
    }

    /// Seal under a KMS key: `NKM1` ‖ key id (36) ‖ nonce ‖ ciphertext+tag.
    fn seal(
        &self,
        key: &str,
        plain: &[u8],
        ctx: Option<&Map<String, Value>>,
    ) -> Result<(String, Vec<u8>), AwsError> {
        let g = self.lock();
        let k = self.usable(&g, key)?;
        let nonce: [u8; 12] = random()?;
        let aad = context_aad(ctx)?;
        let ct = k
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(internal)?;
        let id = k.meta.key_id.clone();
        let mut out = Vec::with_capacity(4 + id.len() + 12 + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok((id, out))
    }

    fn unseal(
        &self,
        blob: &[u8],
        key: Option<&str>,
        ctx: Option<&Map<String, Value>>,
    ) -> Result<(String, Vec<u8>), AwsError> {
        let invalid = || err("InvalidCiphertextException", "");
        let rest = blob.strip_prefix(MAGIC).ok_or_else(invalid)?;
        if rest.len() < 36 + 12 + 16 {
            return Err(invalid());
        }
        let id = std::str::from_utf8(&rest[..36])
            .map_err(|_| invalid())?
            .to_string();
        let g = self.lock();
        if let Some(want) = key {
            let want = self.resolve(&g, want)?;
            if want != id {
                return Err(err(
                    "IncorrectKeyException",
                    "The key ID in the request does not identify a CMK that can perform this operation.",
                ));
            }
        }
        if !g.keys.contains_key(&id) {
            return Err(invalid());
        }
        let k = self.usable(&g, &id)?;
        let aad = context_aad(ctx)?;
        let plain = k
            .cipher
            .decrypt(
                Nonce::from_slice(&rest[36..48]),
                Payload {
                    msg: &rest[48..],
                    aad: &aad,
                },
            )
            .map_err(|_| invalid())?;
        Ok((id, plain))
    }

    /// Whether `key` (id, ARN, alias) names a key that can encrypt now.
    pub fn check_usable(&self, key: &str) -> Result<(), String> {
        let g = self.lock();
        self.usable(&g, key).map(|_| ()).map_err(|e| e.message)
    }

    pub fn stats(&self) -> (usize, usize) {
        let g = self.lock();
        (g.keys.len(), g.aliases.len())
    }

    /// Key ids and their aliases, for a test or an operator (no material).
    pub fn aliases(&self) -> HashMap<String, String> {
        self.lock().aliases.clone().into_iter().collect()
    }
}
