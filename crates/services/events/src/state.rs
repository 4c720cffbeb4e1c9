//! The resources of the service, in memory, written through to [`Store`] on every
//! change; and the compiled rules of each bus ([`PatternSet`]), rebuilt when a
//! bus's rules change.

use crate::store::Store;
use nimbus_patterns::{Pattern, PatternSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bus {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub policy: Option<Value>,
    pub created_ms: i64,
    #[serde(default)]
    pub modified_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub bus: String,
    pub arn: String,
    #[serde(default)]
    pub event_pattern: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    /// `ENABLED`, `DISABLED`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub managed_by: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The targets as `PutTargets` gave them (AWS's field names), by id order of
    /// arrival.
    #[serde(default)]
    pub targets: Vec<Value>,
    /// Schedule rules: when the schedule counts from, and the last fire time
    /// delivered (so a restart neither skips nor repeats one).
    #[serde(default)]
    pub anchor_ms: i64,
    #[serde(default)]
    pub last_fired_ms: Option<i64>,
}

impl Rule {
    pub fn enabled(&self) -> bool {
        self.state == "ENABLED"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Archive {
    pub name: String,
    pub arn: String,
    pub source_arn: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub event_pattern: Option<String>,
    #[serde(default)]
    pub retention_days: i64,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replay {
    pub name: String,
    pub arn: String,
    pub archive_arn: String,
    #[serde(default)]
    pub description: Option<String>,
    pub event_start_ms: i64,
    pub event_end_ms: i64,
    pub destination: Value,
    /// `STARTING`, `RUNNING`, `CANCELLING`, `COMPLETED`, `CANCELLED`, `FAILED`.
    pub state: String,
    #[serde(default)]
    pub state_reason: Option<String>,
    pub replay_start_ms: i64,
    #[serde(default)]
    pub replay_end_ms: Option<i64>,
    #[serde(default)]
    pub last_replayed_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `BASIC`, `API_KEY`, `OAUTH_CLIENT_CREDENTIALS`.
    pub authorization_type: String,
    /// `AuthParameters` as given (secrets included: stored, never answered).
    pub auth: Value,
    /// `DeauthorizeConnection` dropped the secrets (until `UpdateConnection`).
    #[serde(default)]
    pub deauthorized: bool,
    pub created_ms: i64,
    pub modified_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiDestination {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    pub connection_arn: String,
    pub endpoint: String,
    pub method: String,
    #[serde(default)]
    pub rate_limit: Option<i64>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// A bus's archives: name and compiled pattern (none: every event).
pub type ArchiveSet = Vec<(String, Option<Pattern>)>;

/// Everything, in memory.
#[derive(Default)]
pub struct State {
    pub buses: BTreeMap<String, Bus>,
    /// `(bus, rule)` → rule.
    pub rules: BTreeMap<(String, String), Rule>,
    pub archives: BTreeMap<String, Archive>,
    pub replays: BTreeMap<String, Replay>,
    pub connections: BTreeMap<String, Connection>,
    pub destinations: BTreeMap<String, ApiDestination>,
    /// Compiled enabled pattern rules of each bus, built on first use after a
    /// change.
    compiled: HashMap<String, Arc<BusRules>>,
    /// Compiled archive patterns of each bus.
    archive_sets: HashMap<String, Arc<ArchiveSet>>,
}

/// A bus's enabled event-pattern rules, compiled and indexed, with their targets.
pub struct BusRules {
    pub set: PatternSet<usize>,
    /// Indexed by the set's keys: `(rule name, rule arn, targets)`.
    pub rules: Vec<(String, String, Vec<Value>)>,
}

pub const K_BUS: &str = "bus";
pub const K_RULE: &str = "rule";
pub const K_ARCHIVE: &str = "archive";
pub const K_REPLAY: &str = "replay";
pub const K_CONNECTION: &str = "connection";
pub const K_DESTINATION: &str = "api-destination";

pub fn rule_key(bus: &str, name: &str) -> String {
    format!("{bus}/{name}")
}

impl State {
    /// Load every document.
    pub fn load(store: &Store) -> Result<State, String> {
        fn all<T: for<'de> Deserialize<'de>>(store: &Store, kind: &str) -> Result<Vec<T>, String> {
            store
                .docs(kind)
                .map_err(|e| e.to_string())?
                .iter()
                .map(|d| serde_json::from_str(d).map_err(|e| format!("{kind}: {e}")))
                .collect()
        }
        let mut s = State::default();
        for b in all::<Bus>(store, K_BUS)? {
            s.buses.insert(b.name.clone(), b);
        }
        for r in all::<Rule>(store, K_RULE)? {
            s.rules.insert((r.bus.clone(), r.name.clone()), r);
        }
        for a in all::<Archive>(store, K_ARCHIVE)? {
            s.archives.insert(a.name.clone(), a);
        }
        for r in all::<Replay>(store, K_REPLAY)? {
            s.replays.insert(r.name.clone(), r);
        }
        for c in all::<Connection>(store, K_CONNECTION)? {
            s.connections.insert(c.name.clone(), c);
        }
        for d in all::<ApiDestination>(store, K_DESTINATION)? {
            s.destinations.insert(d.name.clone(), d);
        }
        Ok(s)
    }

    /// Forget the compiled rules of `bus` (its rules or targets changed).
    pub fn invalidate(&mut self, bus: &str) {
        self.compiled.remove(bus);
        self.archive_sets.remove(bus);
    }

    /// The compiled enabled pattern rules of `bus`.
    pub fn bus_rules(&mut self, bus: &str) -> Arc<BusRules> {
        if let Some(c) = self.compiled.get(bus) {
            return c.clone();
        }
        let mut entries = Vec::new();
        let mut rules = Vec::new();
        for ((b, _), r) in self.rules.range((bus.to_string(), String::new())..) {
            if b != bus {
                break;
            }
            if !r.enabled() {
                continue;
            }
            let Some(p) = r
                .event_pattern
                .as_deref()
                .and_then(|p| Pattern::parse(p).ok())
            else {
                continue;
            };
            entries.push((rules.len(), p));
            rules.push((r.name.clone(), r.arn.clone(), r.targets.clone()));
        }
        let compiled = Arc::new(BusRules {
            set: PatternSet::new(entries),
            rules,
        });
        self.compiled.insert(bus.to_string(), compiled.clone());
        compiled
    }

    /// The archives recording `bus` (by its ARN), with their compiled patterns.
    pub fn bus_archives(&mut self, bus_arn: &str) -> Arc<ArchiveSet> {
        if let Some(a) = self.archive_sets.get(bus_arn) {
            return a.clone();
        }
        let list: Vec<_> = self
            .archives
            .values()
            .filter(|a| a.source_arn == bus_arn)
            .map(|a| {
                (
                    a.name.clone(),
                    a.event_pattern
                        .as_deref()
                        .and_then(|p| Pattern::parse(p).ok()),
                )
            })
            .collect();
        let list = Arc::new(list);
        self.archive_sets.insert(bus_arn.to_string(), list.clone());
        list
    }

    /// Forget every compiled archive list (an archive was created or deleted).
    pub fn invalidate_archives(&mut self) {
        self.archive_sets.clear();
    }
}
