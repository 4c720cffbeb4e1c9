//! API keys and usage plans. A route with `api_key_required` takes only requests
//! whose `x-api-key` header holds an enabled key that belongs to a usage plan (as on
//! AWS, a key outside every plan is refused); the plan's throttle and quota then
//! apply per key.
//!
//! Quota counters are counted in memory and written to SQLite every second (and on
//! shutdown), so a restart resumes the period's count. A `kill -9` can lose at most
//! the last second of counting.

use super::{validate_name, AuthError, Denied, GatewayAuth, KIND_KEY, KIND_PLAN};
use crate::event::RequestInfo;
use crate::throttle::ThrottleSettings;
use nimbus_store::{GatewayAuthStore, StoreError, UsageRow};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The period a quota counts over; each starts at 00:00 UTC (weeks on Monday,
/// months on the 1st).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    Day,
    Week,
    Month,
}

impl QuotaPeriod {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "DAY" => Ok(QuotaPeriod::Day),
            "WEEK" => Ok(QuotaPeriod::Week),
            "MONTH" => Ok(QuotaPeriod::Month),
            _ => Err(format!("Invalid quota period {s:?}: DAY, WEEK or MONTH")),
        }
    }

    /// The start (epoch ms) of the period holding `now_ms`.
    pub fn start_of(&self, now_ms: i64) -> i64 {
        let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let day = t.date();
        let start = match self {
            QuotaPeriod::Day => day,
            QuotaPeriod::Week => {
                day - time::Duration::days(day.weekday().number_days_from_monday() as i64)
            }
            QuotaPeriod::Month => day.replace_day(1).expect("day 1 exists"),
        };
        start.midnight().assume_utc().unix_timestamp() * 1000
    }
}

/// At most `limit` requests per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub limit: u64,
    pub period: QuotaPeriod,
}

/// A usage plan: the throttle and quota its keys get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePlan {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

impl UsagePlan {
    pub fn validate(&self) -> Result<(), String> {
        validate_name("usage plan", &self.name)?;
        if let Some(t) = &self.throttle {
            t.validate()?;
        }
        if let Some(q) = &self.quota {
            if q.limit == 0 {
                return Err("Invalid quota limit 0: must be at least 1".into());
            }
        }
        Ok(())
    }
}

/// An API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// 10 characters, generated; what `apiKeyId` carries.
    pub id: String,
    pub name: String,
    /// What clients send in `x-api-key` (20 to 128 characters).
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

fn yes() -> bool {
    true
}

/// `n` random characters of `[a-z0-9]` (`upper`: `[A-Za-z0-9]`).
fn random_text(n: usize, upper: bool) -> String {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let alphabet = if upper { MIXED } else { LOWER };
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in uuid::Uuid::new_v4().as_bytes() {
            // Rejection sampling keeps the characters uniform.
            let limit = 256 - 256 % alphabet.len();
            if (*b as usize) < limit && out.len() < n {
                out.push(alphabet[*b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// What an API key's usage is now.
#[derive(Debug, Clone, Serialize)]
pub struct KeyUsage {
    pub key_id: String,
    pub plan: Option<String>,
    pub period: Option<QuotaPeriod>,
    pub period_start_ms: Option<i64>,
    pub used: u64,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

struct Counter {
    period_start: i64,
    used: u64,
    dirty: bool,
}

/// Quota counters by key id.
pub(crate) struct Usage {
    counters: Mutex<HashMap<String, Counter>>,
}

impl Usage {
    pub(crate) fn load(store: &GatewayAuthStore) -> Result<Self, StoreError> {
        let mut m = HashMap::new();
        for (id, period_start, used) in store.usage()? {
            m.insert(
                id,
                Counter {
                    period_start,
                    used,
                    dirty: false,
                },
            );
        }
        Ok(Self {
            counters: Mutex::new(m),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counter>> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one request of `key` against `quota`; `false` when the period's quota
    /// is used up (the request is not counted).
    fn take(&self, key: &str, quota: &Quota, now_ms: i64) -> bool {
        let start = quota.period.start_of(now_ms);
        let mut m = self.lock();
        let c = m.entry(key.to_string()).or_insert(Counter {
            period_start: start,
            used: 0,
            dirty: false,
        });
        if c.period_start != start {
            c.period_start = start;
            c.used = 0;
        }
        if c.used >= quota.limit {
            return false;
        }
        c.used += 1;
        c.dirty = true;
        true
    }

    fn used(&self, key: &str, period_start: i64) -> u64 {
        self.lock()
            .get(key)
            .filter(|c| c.period_start == period_start)
            .map_or(0, |c| c.used)
    }

    fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    pub(crate) async fn flush(&self, store: &GatewayAuthStore) {
        let rows: Vec<(String, i64, u64)> = {
            let mut m = self.lock();
            m.iter_mut()
                .filter(|(_, c)| c.dirty)
                .map(|(k, c)| {
                    c.dirty = false;
                    (k.clone(), c.period_start, c.used)
                })
                .collect()
        };
        if rows.is_empty() {
            return;
        }
        let store = store.clone();
        let res = tokio::task::spawn_blocking(move || {
            let r: Vec<UsageRow<'_>> = rows
                .iter()
                .map(|(k, p, u)| UsageRow {
                    key_id: k,
                    period_start: *p,
                    used: *u,
                })
                .collect();
            store.put_usage(&r).map_err(|e| (e, rows.clone()))
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err((e, rows))) => {
                tracing::warn!(error = %e, "cannot store API key quota counters; will retry");
                let mut m = self.lock();
                for (k, p, _) in rows {
                    if let Some(c) = m.get_mut(&k) {
                        if c.period_start == p {
                            c.dirty = true;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "quota counter write task failed"),
        }
    }
}

/// The API-key checks of one request: `(value, id)` of the key, or why not.
pub(crate) fn check(auth: &GatewayAuth, req: &RequestInfo<'_>) -> Result<(String, String), Denied> {
    let Some(value) = req
        .headers
        .iter()
        .find(|(n, _)| *n == "x-api-key")
        .map(|(_, v)| v.as_ref())
    else {
        return Err(Denied::Forbidden);
    };
    let snap = auth.snapshot();
    let Some(key) = snap.key_values.get(value).and_then(|id| snap.keys.get(id)) else {
        return Err(Denied::Forbidden);
    };
    if !key.enabled {
        return Err(Denied::Forbidden);
    }
    let Some(plan) = key.plan.as_ref().and_then(|p| snap.plans.get(p)) else {
        return Err(Denied::Forbidden);
    };
    if let Some(t) = plan.throttle {
        if !auth.inner.throttles.allow(&format!("key {}", key.id), t) {
            return Err(Denied::Throttled);
        }
    }
    if let Some(q) = &plan.quota {
        if !auth.inner.usage.take(&key.id, q, req.time_ms) {
            return Err(Denied::LimitExceeded);
        }
    }
    Ok((key.value.clone(), key.id.clone()))
}

/// The body of a key creation or update.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub name: Option<String>,
    /// A chosen value (20–128 printable ASCII characters); generated when absent.
    pub value: Option<String>,
    /// `""` removes the key from its plan.
    pub plan: Option<String>,
    pub enabled: Option<bool>,
}

impl GatewayAuth {
    // -- usage plans ---------------------------------------------------------

    pub fn plans(&self) -> Vec<Arc<UsagePlan>> {
        let mut v: Vec<_> = self.snapshot().plans.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn plan(&self, name: &str) -> Option<Arc<UsagePlan>> {
        self.snapshot().plans.get(name).cloned()
    }

    /// Create or replace a usage plan; `true` when new.
    pub async fn put_plan(&self, mut p: UsagePlan) -> Result<(Arc<UsagePlan>, bool), AuthError> {
        p.validate().map_err(AuthError::Invalid)?;
        let _w = self.inner.write.lock().await;
        let prev = self.plan(&p.name);
        let now = nimbus_core::now_ms();
        p.created_ms = prev.as_ref().map_or(now, |x| x.created_ms);
        p.updated_ms = now;
        let json = serde_json::to_string(&p).expect("a plan serialises");
        self.store_put(KIND_PLAN, &p.name, json).await?;
        let p = Arc::new(p);
        self.swap(|s| {
            s.plans.insert(p.name.clone(), p.clone());
        });
        Ok((p, prev.is_none()))
    }

    /// Delete a usage plan no key belongs to.
    pub async fn delete_plan(&self, name: &str) -> Result<(), AuthError> {
        let _w = self.inner.write.lock().await;
        let snap = self.snapshot();
        if !snap.plans.contains_key(name) {
            return Err(AuthError::NotFound(format!("Usage plan not found: {name}")));
        }
        let mut users: Vec<&str> = snap
            .keys
            .values()
            .filter(|k| k.plan.as_deref() == Some(name))
            .map(|k| k.name.as_str())
            .collect();
        if !users.is_empty() {
            users.sort_unstable();
            return Err(AuthError::Conflict(format!(
                "Usage plan {name} has API keys ({}); remove them from it first",
                users.join(", ")
            )));
        }
        self.store_delete(KIND_PLAN, name).await?;
        self.swap(|s| {
            s.plans.remove(name);
        });
        Ok(())
    }

    // -- API keys ------------------------------------------------------------

    pub fn keys(&self) -> Vec<Arc<ApiKey>> {
        let mut v: Vec<_> = self.snapshot().keys.values().cloned().collect();
        v.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        v
    }

    /// A key by id, else by name (when exactly one key has it).
    pub fn key(&self, id_or_name: &str) -> Result<Arc<ApiKey>, AuthError> {
        let snap = self.snapshot();
        if let Some(k) = snap.keys.get(id_or_name) {
            return Ok(k.clone());
        }
        let named: Vec<_> = snap
            .keys
            .values()
            .filter(|k| k.name == id_or_name)
            .collect();
        match named.len() {
            1 => Ok(named[0].clone()),
            0 => Err(AuthError::NotFound(format!(
                "API key not found: {id_or_name}"
            ))),
            _ => Err(AuthError::Conflict(format!(
                "{} API keys are named {id_or_name}; use the key's id",
                named.len()
            ))),
        }
    }

    fn check_key_spec(&self, spec: &KeySpec) -> Result<(), AuthError> {
        if let Some(n) = &spec.name {
            if n.is_empty() || n.len() > 128 {
                return Err(AuthError::Invalid(format!(
                    "Invalid API key name {n:?}: 1 to 128 characters"
                )));
            }
        }
        if let Some(v) = &spec.value {
            if v.len() < 20 || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AuthError::Invalid(
                    "Invalid API key value: 20 to 128 printable ASCII characters".into(),
                ));
            }
        }
        if let Some(p) = spec.plan.as_deref().filter(|p| !p.is_empty()) {
            if self.plan(p).is_none() {
                return Err(AuthError::NotFound(format!("Usage plan not found: {p}")));
            }
        }
        Ok(())
    }

    /// Create a key (its value generated unless given).
    pub async fn create_key(&self, spec: KeySpec) -> Result<Arc<ApiKey>, AuthError> {
        let Some(name) = spec.name.clone() else {
            return Err(AuthError::Invalid("An API key needs a name".into()));
        };
        self.check_key_spec(&spec)?;
        let _w = self.inner.write.lock().await;
        let value = spec.value.clone().unwrap_or_else(|| random_text(40, true));
        if self.snapshot().key_values.contains_key(&value) {
            return Err(AuthError::Conflict(
                "An API key with this value exists".into(),
            ));
        }
        let now = nimbus_core::now_ms();
        let k = ApiKey {
            id: random_text(10, false),
            name,
            value,
            plan: spec.plan.filter(|p| !p.is_empty()),
            enabled: spec.enabled.unwrap_or(true),
            created_ms: now,
            updated_ms: now,
        };
        self.save_key(k).await
    }

    /// Change a key's name, plan or enabled flag (its value stays).
    pub async fn update_key(
        &self,
        id_or_name: &str,
        spec: KeySpec,
    ) -> Result<Arc<ApiKey>, AuthError> {
        if spec.value.is_some() {
            return Err(AuthError::Invalid(
                "An API key's value cannot change; create a new key".into(),
            ));
        }
        self.check_key_spec(&spec)?;
        let _w = self.inner.write.lock().await;
        let mut k = (*self.key(id_or_name)?).clone();
        if let Some(n) = spec.name {
            k.name = n;
        }
        if let Some(p) = spec.plan {
            k.plan = Some(p).filter(|p| !p.is_empty());
        }
        if let Some(e) = spec.enabled {
            k.enabled = e;
        }
        k.updated_ms = nimbus_core::now_ms();
        self.save_key(k).await
    }

    async fn save_key(&self, k: ApiKey) -> Result<Arc<ApiKey>, AuthError> {
        let json = serde_json::to_string(&k).expect("a key serialises");
        self.store_put(KIND_KEY, &k.id, json).await?;
        let k = Arc::new(k);
        self.swap(|s| {
            s.key_values.insert(k.value.clone(), k.id.clone());
            s.keys.insert(k.id.clone(), k.clone());
        });
        Ok(k)
    }

    pub async fn delete_key(&self, id_or_name: &str) -> Result<Arc<ApiKey>, AuthError> {
        let _w = self.inner.write.lock().await;
        let k = self.key(id_or_name)?;
        self.store_delete(KIND_KEY, &k.id).await?;
        self.swap(|s| {
            s.keys.remove(&k.id);
            s.key_values.remove(&k.value);
        });
        self.inner.usage.forget(&k.id);
        self.inner.throttles.forget(&format!("key {}", k.id));
        Ok(k)
    }

    /// A key's quota usage in the current period.
    pub fn key_usage(&self, id_or_name: &str) -> Result<KeyUsage, AuthError> {
        let k = self.key(id_or_name)?;
        let quota = k
            .plan
            .as_ref()
            .and_then(|p| self.plan(p))
            .and_then(|p| p.quota);
        let mut u = KeyUsage {
            key_id: k.id.clone(),
            plan: k.plan.clone(),
            period: None,
            period_start_ms: None,
            used: 0,
            limit: None,
            remaining: None,
        };
        if let Some(q) = quota {
            let start = q.period.start_of(nimbus_core::now_ms());
            u.period = Some(q.period);
            u.period_start_ms = Some(start);
            u.used = self.inner.usage.used(&k.id, start);
            u.limit = Some(q.limit);
            u.remaining = Some(q.limit.saturating_sub(u.used));
        }
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_starts() {
        // 2024-03-14T15:09:26Z, a Thursday.
        let t = 1_710_428_966_000;
        assert_eq!(QuotaPeriod::Day.start_of(t), 1_710_374_400_000); // 2024-03-14
        assert_eq!(QuotaPeriod::Week.start_of(t), 1_710_115_200_000); // Monday 2024-03-11
        assert_eq!(QuotaPeriod::Month.start_of(t), 1_709_251_200_000); // 2024-03-01
    }

    #[test]
    fn random_values() {
        let v = random_text(40, true);
        assert_eq!(v.len(), 40);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(v, random_text(40, true));
        assert!(random_text(10, false)
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn quota_counts_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = GatewayAuthStore::open(&dir.path().join("db")).unwrap();
        let u = Usage::load(&store).unwrap();
        let q = Quota {
            limit: 2,
            period: QuotaPeriod::Day,
        };
        let t = 1_710_428_966_000;
        assert!(u.take("k", &q, t));
        assert!(u.take("k", &q, t));
        assert!(!u.take("k", &q, t));
        // The next day starts afresh.
        assert!(u.take("k", &q, t + 86_400_000));
    }
}
