//! The queue core: every queue and its messages in memory, indexed for receive
//! (visible messages in send order, delayed and in-flight ones by the time they
//! become visible), every state change recorded through the [`Backend`].
//!
//! * A send is acknowledged once its row is durable; the message joins the queue
//!   (and wakes its long-pollers and mappings through the queue's [`Notify`]) right
//!   after its batch commits, in send order — so FIFO order holds across concurrent
//!   sends sharing one group commit.
//! * Deletes, visibility changes, purges and queue changes apply in memory at once
//!   and answer after they are durable. A receive's bookkeeping (receive count,
//!   visibility deadline) is written behind it: a crash can only make a message
//!   visible early, never lose it.
//! * Long polling waits on the queue's `Notify` and, when messages are delayed or
//!   in flight, on the time the first of them becomes visible — never a polling
//!   sleep.

use crate::error::SqsError;
use crate::model::{
    md5_hex, md5_of_attributes, parse_redrive, parse_redrive_allow, valid_message_text,
    valid_queue_name, validate_attributes, MsgAttr, QueueAttrs, RedriveAllow, DEDUP_WINDOW_MS,
    QUEUE_ATTRIBUTE_NAMES,
};
use crate::store::{Backend, Change, DedupRecord, MessageRecord, MoveTaskRecord, QueueRecord};
use base64::Engine as _;
use nimbus_core::now_ms;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// One message in memory.
#[derive(Debug, Clone)]
struct Msg {
    rec: MessageRecord,
    /// Received and not yet visible again.
    in_flight: bool,
    md5_body: String,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub sends: AtomicU64,
    pub receives: AtomicU64,
    pub deletes: AtomicU64,
}

struct Queue {
    rec: QueueRecord,
    msgs: BTreeMap<u64, Msg>,
    /// Receivable now, in send order.
    visible: BTreeSet<u64>,
    /// Delayed or in flight: (visible at, seq).
    pending: BTreeSet<(i64, u64)>,
    /// FIFO: messages in flight per group (a group with any is blocked).
    inflight_groups: HashMap<String, usize>,
    dedup: HashMap<String, DedupRecord>,
    notify: Arc<Notify>,
    last_purge_ms: Option<i64>,
    stats: Arc<QueueStats>,
}

impl Queue {
    fn new(rec: QueueRecord) -> Self {
        Self {
            rec,
            msgs: BTreeMap::new(),
            visible: BTreeSet::new(),
            pending: BTreeSet::new(),
            inflight_groups: HashMap::new(),
            dedup: HashMap::new(),
            notify: Arc::new(Notify::new()),
            last_purge_ms: None,
            stats: Arc::new(QueueStats::default()),
        }
    }

    fn fifo(&self) -> bool {
        self.rec.attrs.fifo_queue
    }

    /// Add a message (from a committed send, a move, or the snapshot).
    fn add(&mut self, rec: MessageRecord, now: i64) {
        let seq = rec.seq;
        let in_flight = rec.receive_count > 0 && rec.visible_at_ms > now;
        if in_flight {
            if let Some(g) = &rec.group_id {
                *self.inflight_groups.entry(g.clone()).or_default() += 1;
            }
        }
        if rec.visible_at_ms > now {
            self.pending.insert((rec.visible_at_ms, seq));
        } else {
            self.visible.insert(seq);
        }
        let md5_body = md5_hex(rec.body.as_bytes());
        self.msgs.insert(
            seq,
            Msg {
                rec,
                in_flight,
                md5_body,
            },
        );
    }

    /// Take a message out of every index.
    fn remove(&mut self, seq: u64) -> Option<Msg> {
        let m = self.msgs.remove(&seq)?;
        self.visible.remove(&seq);
        self.pending.remove(&(m.rec.visible_at_ms, seq));
        if m.in_flight {
            self.release_group(&m);
        }
        Some(m)
    }

    fn release_group(&mut self, m: &Msg) {
        if let Some(g) = &m.rec.group_id {
            if let Some(n) = self.inflight_groups.get_mut(g) {
                *n -= 1;
                if *n == 0 {
                    self.inflight_groups.remove(g);
                }
            }
        }
    }

    /// Make every message whose time has come visible.
    fn promote(&mut self, now: i64) {
        while let Some(&(due, seq)) = self.pending.first() {
            if due > now {
                break;
            }
            self.pending.pop_first();
            let mut release = None;
            if let Some(m) = self.msgs.get_mut(&seq) {
                if m.in_flight {
                    m.in_flight = false;
                    release = Some(m.clone());
                }
                self.visible.insert(seq);
            }
            if let Some(m) = release {
                self.release_group(&m);
            }
        }
    }

    /// When the next delayed or in-flight message becomes visible.
    fn next_due(&self) -> Option<i64> {
        self.pending.first().map(|(d, _)| *d)
    }

    fn counts(&self) -> (usize, usize, usize) {
        let in_flight = self.msgs.values().filter(|m| m.in_flight).count();
        let delayed = self.pending.len().saturating_sub(in_flight);
        (self.visible.len(), in_flight, delayed)
    }
}

struct State {
    queues: HashMap<String, Queue>,
    /// Queue id → name, for receipt handles and commits.
    names: HashMap<i64, String>,
    next_queue_id: i64,
    next_seq: u64,
}

/// What a send carries.
#[derive(Debug, Clone, Default)]
pub struct SendInput {
    pub body: String,
    pub attrs: BTreeMap<String, MsgAttr>,
    pub trace_header: Option<String>,
    pub delay_seconds: Option<u32>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sender_id: String,
}

/// What a send answers.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOutput {
    pub message_id: String,
    pub md5_body: String,
    pub md5_attrs: Option<String>,
    pub md5_system: Option<String>,
    pub sequence_number: Option<String>,
}

/// A received message, with every attribute (the wire filters).
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_body: String,
    /// System attributes by name (`SentTimestamp`, `ApproximateReceiveCount`, …).
    pub system: BTreeMap<String, String>,
    pub attrs: BTreeMap<String, MsgAttr>,
}

/// A receive's settings.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveInput {
    pub max: usize,
    pub visibility_timeout: Option<u32>,
    /// `None`: the queue's `ReceiveMessageWaitTimeSeconds`.
    pub wait_seconds: Option<u32>,
}

/// A message as the admin surface shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Peeked {
    pub message_id: String,
    pub body: String,
    pub sent_ms: i64,
    pub receive_count: u32,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

/// A queue's numbers for the admin surface and `/metrics`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueSummary {
    pub name: String,
    pub arn: String,
    pub fifo: bool,
    pub visible: usize,
    pub in_flight: usize,
    pub delayed: usize,
    pub oldest_age_ms: i64,
    pub sends: u64,
    pub receives: u64,
    pub deletes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_target: Option<String>,
}

/// A message move task (`StartMessageMoveTask`), durable in `sqs.db`.
#[derive(Debug, Clone)]
pub struct MoveTask {
    pub handle: String,
    pub source_arn: String,
    pub destination_arn: Option<String>,
    pub max_per_second: Option<u32>,
    pub status: &'static str,
    pub moved: u64,
    pub to_move: u64,
    pub failure_reason: Option<String>,
    pub started_ms: i64,
    cancel: Arc<AtomicBool>,
}

fn task_status(s: &str) -> &'static str {
    match s {
        "RUNNING" => "RUNNING",
        "CANCELLING" => "CANCELLING",
        "CANCELLED" => "CANCELLED",
        "COMPLETED" => "COMPLETED",
        _ => "FAILED",
    }
}

impl MoveTask {
    fn record(&self) -> MoveTaskRecord {
        MoveTaskRecord {
            handle: self.handle.clone(),
            source_arn: self.source_arn.clone(),
            destination_arn: self.destination_arn.clone(),
            max_per_second: self.max_per_second,
            status: self.status.to_string(),
            moved: self.moved,
            to_move: self.to_move,
            failure_reason: self.failure_reason.clone(),
            started_ms: self.started_ms,
        }
    }

    fn from_record(r: MoveTaskRecord) -> Self {
        Self {
            status: task_status(&r.status),
            handle: r.handle,
            source_arn: r.source_arn,
            destination_arn: r.destination_arn,
            max_per_second: r.max_per_second,
            moved: r.moved,
            to_move: r.to_move,
            failure_reason: r.failure_reason,
            started_ms: r.started_ms,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The queue service's core.
pub struct Sqs {
    state: Arc<Mutex<State>>,
    backend: Arc<dyn Backend>,
    pub region: String,
    pub account: String,
    tasks: Mutex<Vec<MoveTask>>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A receipt handle: the queue, the message and which receive of it.
fn make_handle(queue_id: i64, seq: u64, receive_count: u32, message_id: &str) -> String {
    b64().encode(format!("{queue_id}:{seq}:{receive_count}:{message_id}"))
}

fn parse_handle(h: &str) -> Result<(i64, u64, u32), SqsError> {
    let bad = || SqsError::ReceiptHandleIsInvalid(h.to_string());
    let raw = b64().decode(h.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut it = text.splitn(4, ':');
    let q = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let s = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let c = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((q, s, c))
}

/// The name of the queue an SQS ARN names.
pub fn name_of_arn(arn: &str) -> Option<&str> {
    let mut p = arn.splitn(6, ':');
    match (p.next(), p.next(), p.next(), p.next(), p.next(), p.next()) {
        (Some("arn"), Some(_), Some("sqs"), Some(_), Some(_), Some(name)) if !name.is_empty() => {
            Some(name)
        }
        _ => None,
    }
}

fn sequence_number(seq: u64) -> String {
    format!("{:020}", 18_000_000_000_000_000_000u64 / 1000 + seq)
}

impl Sqs {
    /// Load the backend's state and serve it.
    pub fn open(
        backend: Arc<dyn Backend>,
        region: &str,
        account: &str,
    ) -> Result<Arc<Self>, SqsError> {
        let snap = backend.load()?;
        let now = now_ms();
        let mut st = State {
            queues: HashMap::new(),
            names: HashMap::new(),
            next_queue_id: 1,
            next_seq: 1,
        };
        for q in snap.queues {
            st.next_queue_id = st.next_queue_id.max(q.id + 1);
            st.names.insert(q.id, q.name.clone());
            st.queues.insert(q.name.clone(), Queue::new(q));
        }
        for m in snap.messages {
            st.next_seq = st.next_seq.max(m.seq + 1);
            if let Some(name) = st.names.get(&m.queue_id).cloned() {
                if let Some(q) = st.queues.get_mut(&name) {
                    q.add(m, now);
                }
            }
        }
        for d in snap.dedup {
            if let Some(name) = st.names.get(&d.queue_id).cloned() {
                if let Some(q) = st.queues.get_mut(&name) {
                    q.dedup.insert(d.key.clone(), d);
                }
            }
        }
        Ok(Arc::new(Self {
            state: Arc::new(Mutex::new(st)),
            backend,
            region: region.to_string(),
            account: account.to_string(),
            tasks: Mutex::new(
                snap.move_tasks
                    .into_iter()
                    .map(MoveTask::from_record)
                    .collect(),
            ),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account)
    }

    async fn commit(&self, changes: Vec<Change>) -> Result<(), SqsError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.backend
            .commit(changes, None)
            .await
            .map_err(|_| SqsError::Internal("the queue writer stopped".into()))??;
        Ok(())
    }

    /// Record changes without waiting for them, and without an fsync of their own
    /// (they reach disk with the next durable commit; see [`Backend::record`]).
    fn commit_behind(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            self.backend.record(changes);
        }
    }

    // ---- queues ----------------------------------------------------------------

    pub fn queue_exists(&self, name: &str) -> bool {
        self.lock().queues.contains_key(name)
    }

    pub fn is_fifo(&self, name: &str) -> Option<bool> {
        self.lock().queues.get(name).map(Queue::fifo)
    }

    /// Whether the queue has a message a receive would take now (the backlog
    /// pollers scale on).
    pub fn has_visible(&self, name: &str) -> bool {
        let mut st = self.lock();
        st.queues.get_mut(name).is_some_and(|q| {
            q.promote(now_ms());
            !q.visible.is_empty()
        })
    }

    /// The queue's `Notify` (a send or a visibility change wakes it).
    pub fn notifier(&self, name: &str) -> Option<Arc<Notify>> {
        self.lock().queues.get(name).map(|q| q.notify.clone())
    }

    /// Check a redrive policy's target against the queues that exist.
    fn check_redrive(
        st: &State,
        source_name: &str,
        fifo: bool,
        attrs: &QueueAttrs,
        account_arn: &dyn Fn(&str) -> String,
    ) -> Result<(), SqsError> {
        let Some(policy) = attrs.redrive_policy.as_deref() else {
            return Ok(());
        };
        let r = parse_redrive(policy)?;
        let bad = |why: &str| {
            SqsError::InvalidParameterValue(format!(
                "Value {policy} for parameter RedrivePolicy is invalid. Reason: {why}"
            ))
        };
        let target = name_of_arn(&r.dead_letter_target_arn)
            .and_then(|n| st.queues.get(n))
            .ok_or_else(|| bad("Dead-letter target does not exist."))?;
        if target.fifo() != fifo {
            return Err(bad(
                "Dead-letter queue must be the same type of queue as the source.",
            ));
        }
        if let Some(allow) = target.rec.attrs.redrive_allow_policy.as_deref() {
            let source_arn = account_arn(source_name);
            let ok = match parse_redrive_allow(allow)? {
                RedriveAllow::AllowAll => true,
                RedriveAllow::DenyAll => false,
                RedriveAllow::ByQueue(arns) => arns.contains(&source_arn),
            };
            if !ok {
                return Err(bad("Dead-letter target does not allow this source queue."));
            }
        }
        Ok(())
    }

    /// `CreateQueue`: the queue, or the existing one when the given attributes
    /// match it.
    pub async fn create_queue(
        &self,
        name: &str,
        given: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), SqsError> {
        let fifo_attr = given
            .get("FifoQueue")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !valid_queue_name(name, fifo_attr) {
            if name.ends_with(".fifo") && !fifo_attr && valid_queue_name(name, true) {
                return Err(SqsError::InvalidParameterValue(
                    "The name of a FIFO queue can only include alphanumeric characters, hyphens, \
                     or underscores, must end with .fifo suffix and be 1 to 80 in length."
                        .into(),
                ));
            }
            return Err(SqsError::InvalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in \
                 length"
                    .into(),
            ));
        }
        if tags.len() > 50 {
            return Err(SqsError::invalid(
                "Too many tags: a queue may have at most 50.",
            ));
        }
        let mut attrs = QueueAttrs::default();
        attrs.apply(given, true)?;
        let change = {
            let mut st = self.lock();
            if let Some(q) = st.queues.get(name) {
                let existing = q.rec.attrs.settable();
                let wanted = attrs.settable();
                for k in given.keys() {
                    if existing.get(k.as_str()) != wanted.get(k.as_str()) {
                        return Err(SqsError::QueueNameExists(format!(
                            "A queue already exists with the same name and a different value \
                             for attribute {k}"
                        )));
                    }
                }
                return Ok(());
            }
            let arn_of = |n: &str| self.arn(n);
            Self::check_redrive(&st, name, attrs.fifo_queue, &attrs, &arn_of)?;
            let now = now_ms();
            let id = st.next_queue_id;
            st.next_queue_id += 1;
            let rec = QueueRecord {
                id,
                name: name.to_string(),
                attrs,
                tags: tags.clone(),
                created_ms: now,
                modified_ms: now,
            };
            st.names.insert(id, name.to_string());
            st.queues.insert(name.to_string(), Queue::new(rec.clone()));
            Change::PutQueue(rec)
        };
        tracing::info!(queue = name, "sqs: queue created");
        self.commit(vec![change]).await
    }

    pub async fn delete_queue(&self, name: &str) -> Result<(), SqsError> {
        let id = {
            let mut st = self.lock();
            let q = st.queues.remove(name).ok_or(SqsError::QueueDoesNotExist)?;
            st.names.remove(&q.rec.id);
            q.notify.notify_waiters();
            q.rec.id
        };
        tracing::info!(queue = name, "sqs: queue deleted");
        self.commit(vec![Change::DeleteQueue(id)]).await
    }

    /// Queue names with `prefix`, sorted.
    pub fn list_queues(&self, prefix: Option<&str>) -> Vec<String> {
        let st = self.lock();
        let mut names: Vec<String> = st
            .queues
            .keys()
            .filter(|n| prefix.is_none_or(|p| n.starts_with(p)))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Queues whose redrive policy targets `name`.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>, SqsError> {
        let st = self.lock();
        if !st.queues.contains_key(name) {
            return Err(SqsError::QueueDoesNotExist);
        }
        let arn = self.arn(name);
        let mut out: Vec<String> = st
            .queues
            .values()
            .filter(|q| {
                q.rec
                    .attrs
                    .redrive()
                    .is_some_and(|r| r.dead_letter_target_arn == arn)
            })
            .map(|q| q.rec.name.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    /// `GetQueueAttributes` (`All` or names).
    pub fn get_attributes(
        &self,
        name: &str,
        wanted: &[String],
    ) -> Result<BTreeMap<String, String>, SqsError> {
        for w in wanted {
            if w != "All" && !QUEUE_ATTRIBUTE_NAMES.contains(&w.as_str()) {
                return Err(SqsError::InvalidAttributeName(format!(
                    "Unknown Attribute {w}."
                )));
            }
        }
        let now = now_ms();
        let mut st = self.lock();
        let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
        q.promote(now);
        let (visible, in_flight, delayed) = q.counts();
        let mut all: BTreeMap<String, String> = q
            .rec
            .attrs
            .settable()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        all.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        all.insert(
            "ApproximateNumberOfMessagesNotVisible".into(),
            in_flight.to_string(),
        );
        all.insert(
            "ApproximateNumberOfMessagesDelayed".into(),
            delayed.to_string(),
        );
        all.insert(
            "CreatedTimestamp".into(),
            (q.rec.created_ms / 1000).to_string(),
        );
        all.insert(
            "LastModifiedTimestamp".into(),
            (q.rec.modified_ms / 1000).to_string(),
        );
        all.insert("QueueArn".into(), self.arn(name));
        if wanted.iter().any(|w| w == "All") {
            return Ok(all);
        }
        Ok(all
            .into_iter()
            .filter(|(k, _)| wanted.contains(k))
            .collect())
    }

    pub async fn set_attributes(
        &self,
        name: &str,
        given: &BTreeMap<String, String>,
    ) -> Result<(), SqsError> {
        let change = {
            let mut st = self.lock();
            let q = st.queues.get(name).ok_or(SqsError::QueueDoesNotExist)?;
            let mut attrs = q.rec.attrs.clone();
            attrs.apply(given, false)?;
            let arn_of = |n: &str| self.arn(n);
            Self::check_redrive(&st, name, attrs.fifo_queue, &attrs, &arn_of)?;
            let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
            q.rec.attrs = attrs;
            q.rec.modified_ms = now_ms();
            Change::PutQueue(q.rec.clone())
        };
        self.commit(vec![change]).await
    }

    pub fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, SqsError> {
        let st = self.lock();
        let q = st.queues.get(name).ok_or(SqsError::QueueDoesNotExist)?;
        Ok(q.rec.tags.clone())
    }

    pub async fn tag(
        &self,
        name: &str,
        add: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), SqsError> {
        let change = {
            let mut st = self.lock();
            let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
            let mut tags = q.rec.tags.clone();
            tags.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
            for k in remove {
                tags.remove(k);
            }
            if tags.len() > 50 {
                return Err(SqsError::invalid(
                    "Too many tags: a queue may have at most 50.",
                ));
            }
            q.rec.tags = tags;
            Change::PutQueue(q.rec.clone())
        };
        self.commit(vec![change]).await
    }

    /// `PurgeQueue`, at most once a minute per queue.
    pub async fn purge(&self, name: &str) -> Result<(), SqsError> {
        let change = {
            let mut st = self.lock();
            let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
            let now = now_ms();
            if q.last_purge_ms.is_some_and(|t| now - t < 60_000) {
                return Err(SqsError::PurgeQueueInProgress(self.arn(name)));
            }
            q.last_purge_ms = Some(now);
            let max_seq = q.msgs.keys().next_back().copied().unwrap_or(0);
            let seqs: Vec<u64> = q.msgs.keys().copied().collect();
            for s in seqs {
                q.remove(s);
            }
            Change::Purge {
                queue_id: q.rec.id,
                max_seq,
            }
        };
        tracing::info!(queue = name, "sqs: queue purged");
        self.commit(vec![change]).await
    }

    // ---- messages --------------------------------------------------------------

    /// Send messages (one `SendMessage`, or a batch): each is validated on its own;
    /// the accepted ones are committed together and answered once durable.
    pub async fn send(
        &self,
        name: &str,
        inputs: Vec<SendInput>,
    ) -> Result<Vec<Result<SendOutput, SqsError>>, SqsError> {
        let now = now_ms();
        let mut results = Vec::with_capacity(inputs.len());
        let mut changes = Vec::new();
        let mut records = Vec::new();
        let queue_id;
        {
            let mut st = self.lock();
            let next_seq = st.next_seq;
            let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
            queue_id = q.rec.id;
            let mut seq = next_seq;
            for input in inputs {
                match Self::prepare(q, input, now, &mut seq) {
                    Ok((out, Some(rec), dedup)) => {
                        if let Some(d) = dedup {
                            q.dedup.insert(d.key.clone(), d.clone());
                            changes.push(Change::Dedup(d));
                        }
                        changes.push(Change::Insert(rec.clone()));
                        records.push(rec);
                        results.push(Ok(out));
                    }
                    Ok((out, None, _)) => results.push(Ok(out)),
                    Err(e) => results.push(Err(e)),
                }
            }
            st.next_seq = seq;
        }
        if changes.is_empty() {
            return Ok(results);
        }
        let sent = records.len() as u64;
        let state = self.state.clone();
        let after = Box::new(move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(name) = st.names.get(&queue_id).cloned() else {
                return;
            };
            if let Some(q) = st.queues.get_mut(&name) {
                let now = now_ms();
                for r in records {
                    q.add(r, now);
                }
                q.stats.sends.fetch_add(sent, Ordering::Relaxed);
                q.notify.notify_waiters();
            }
        });
        self.backend
            .commit(changes, Some(after))
            .await
            .map_err(|_| SqsError::Internal("the queue writer stopped".into()))??;
        Ok(results)
    }

    /// Validate one send and build its record (`None`: a FIFO duplicate, answered
    /// with the first copy's ids).
    #[allow(clippy::type_complexity)]
    fn prepare(
        q: &mut Queue,
        input: SendInput,
        now: i64,
        seq: &mut u64,
    ) -> Result<(SendOutput, Option<MessageRecord>, Option<DedupRecord>), SqsError> {
        let attrs = &q.rec.attrs;
        if input.body.is_empty() {
            return Err(SqsError::MissingParameter(
                "The request must contain the parameter MessageBody.".into(),
            ));
        }
        if !valid_message_text(&input.body) {
            return Err(SqsError::InvalidMessageContents(
                "Invalid binary character in message body".into(),
            ));
        }
        validate_attributes(&input.attrs)?;
        let size = input.body.len() + input.attrs.iter().map(|(k, a)| a.size(k)).sum::<usize>();
        if size > attrs.maximum_message_size as usize {
            return Err(SqsError::invalid(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} \
                 bytes.",
                attrs.maximum_message_size
            )));
        }
        if let Some(d) = input.delay_seconds {
            if d > 900 {
                return Err(SqsError::invalid(format!(
                    "Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must \
                     be >= 0 and <= 900."
                )));
            }
        }
        let fifo = q.fifo();
        let mut dedup = None;
        if fifo {
            let Some(group) = input.group_id.as_deref() else {
                return Err(SqsError::MissingParameter(
                    "The request must contain the parameter MessageGroupId.".into(),
                ));
            };
            if input.delay_seconds.is_some_and(|d| d > 0) {
                return Err(SqsError::invalid(format!(
                    "Value {} for parameter DelaySeconds is invalid. Reason: The request include \
                     parameter that is not valid for this queue type.",
                    input.delay_seconds.unwrap_or(0)
                )));
            }
            let dedup_id = match (&input.dedup_id, attrs.content_based_deduplication) {
                (Some(d), _) => d.clone(),
                (None, true) => {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(input.body.as_bytes()))
                }
                (None, false) => {
                    return Err(SqsError::invalid(
                        "The queue should either have ContentBasedDeduplication enabled or \
                         MessageDeduplicationId provided explicitly",
                    ))
                }
            };
            for (what, v) in [
                ("MessageGroupId", group),
                ("MessageDeduplicationId", &dedup_id),
            ] {
                let ok = !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic());
                if !ok {
                    return Err(SqsError::invalid(format!(
                        "Value {v} for parameter {what} is invalid. Reason: {what} can only \
                         include alphanumeric and punctuation characters. 1 to 128 in length."
                    )));
                }
            }
            let key = if attrs.deduplication_scope.as_deref() == Some("messageGroup") {
                format!("{group}\u{0}{dedup_id}")
            } else {
                dedup_id.clone()
            };
            if let Some(d) = q.dedup.get(&key) {
                if d.expires_ms > now {
                    return Ok((
                        SendOutput {
                            message_id: d.message_id.clone(),
                            md5_body: md5_hex(input.body.as_bytes()),
                            md5_attrs: md5_of_attributes(&input.attrs),
                            md5_system: system_md5(input.trace_header.as_deref()),
                            sequence_number: d.sequence_number.clone(),
                        },
                        None,
                        None,
                    ));
                }
            }
            let message_id = uuid::Uuid::new_v4().to_string();
            dedup = Some(DedupRecord {
                queue_id: q.rec.id,
                key,
                expires_ms: now + DEDUP_WINDOW_MS,
                message_id,
                sequence_number: Some(sequence_number(*seq)),
            });
            let _ = dedup_id;
        } else if input.dedup_id.is_some() {
            return Err(SqsError::invalid(
                "The request include parameter MessageDeduplicationId that is not valid for this \
                 queue type",
            ));
        }
        let this = *seq;
        *seq += 1;
        let message_id = dedup
            .as_ref()
            .map(|d| d.message_id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let delay = input.delay_seconds.unwrap_or(attrs.delay_seconds);
        let out = SendOutput {
            message_id: message_id.clone(),
            md5_body: md5_hex(input.body.as_bytes()),
            md5_attrs: md5_of_attributes(&input.attrs),
            md5_system: system_md5(input.trace_header.as_deref()),
            sequence_number: fifo.then(|| sequence_number(this)),
        };
        let rec = MessageRecord {
            queue_id: q.rec.id,
            seq: this,
            message_id,
            body: input.body,
            attrs: input.attrs,
            trace_header: input.trace_header,
            sender_id: input.sender_id,
            group_id: input.group_id,
            dedup_id: if fifo {
                dedup
                    .as_ref()
                    .map(|d| d.key.rsplit('\u{0}').next().unwrap_or(&d.key).to_string())
            } else {
                None
            },
            dlq_source_arn: None,
            sent_ms: now,
            receive_count: 0,
            first_receive_ms: None,
            visible_at_ms: now + i64::from(delay) * 1000,
        };
        Ok((out, Some(rec), dedup))
    }

    /// Take up to `max` receivable messages now (no waiting). Messages past the
    /// redrive policy's `maxReceiveCount` go to the dead-letter queue instead.
    fn take(&self, name: &str, input: &ReceiveInput) -> Result<Vec<Received>, SqsError> {
        let now = now_ms();
        let mut changes = Vec::new();
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            let State {
                queues, next_seq, ..
            } = &mut *st;
            let q = queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
            q.promote(now);
            let vt = input
                .visibility_timeout
                .unwrap_or(q.rec.attrs.visibility_timeout);
            let retention_ms = i64::from(q.rec.attrs.message_retention_period) * 1000;
            let redrive = q.rec.attrs.redrive();
            let fifo = q.fifo();
            let mut taken_groups: BTreeSet<String> = BTreeSet::new();
            let mut to_dlq = Vec::new();
            // Walk the visible set in order without copying it (deep queues).
            let mut cursor = 0u64;
            while out.len() < input.max {
                let Some(&seq) = q.visible.range(cursor..).next() else {
                    break;
                };
                cursor = seq + 1;
                let Some(m) = q.msgs.get(&seq) else { continue };
                if now - m.rec.sent_ms > retention_ms {
                    q.remove(seq);
                    changes.push(Change::Delete { seq });
                    continue;
                }
                if fifo {
                    let g = m.rec.group_id.clone().unwrap_or_default();
                    if q.inflight_groups.contains_key(&g) && !taken_groups.contains(&g) {
                        continue;
                    }
                    if let Some(r) = &redrive {
                        if m.rec.receive_count >= r.max_receive_count {
                            to_dlq.push(seq);
                            continue;
                        }
                    }
                    taken_groups.insert(g);
                } else if let Some(r) = &redrive {
                    if m.rec.receive_count >= r.max_receive_count {
                        to_dlq.push(seq);
                        continue;
                    }
                }
                let m = q.msgs.get_mut(&seq).expect("present");
                q.visible.remove(&seq);
                m.rec.receive_count += 1;
                if m.rec.first_receive_ms.is_none() {
                    m.rec.first_receive_ms = Some(now);
                }
                m.rec.visible_at_ms = now + i64::from(vt) * 1000;
                m.in_flight = true;
                q.pending.insert((m.rec.visible_at_ms, seq));
                let m = m.clone();
                if let Some(g) = &m.rec.group_id {
                    *q.inflight_groups.entry(g.clone()).or_default() += 1;
                }
                changes.push(Change::Received {
                    seq,
                    receive_count: m.rec.receive_count,
                    first_receive_ms: m.rec.first_receive_ms,
                    visible_at_ms: m.rec.visible_at_ms,
                });
                out.push(self.received(q.rec.id, &m, fifo));
            }
            q.stats
                .receives
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            if !to_dlq.is_empty() {
                let source_arn = self.arn(name);
                let dlq_name = redrive
                    .as_ref()
                    .and_then(|r| name_of_arn(&r.dead_letter_target_arn))
                    .filter(|d| queues.contains_key(*d) && *d != name)
                    .map(str::to_string);
                if let Some(dlq_name) = dlq_name {
                    let moved: Vec<Msg> = match queues.get_mut(name) {
                        Some(q) => to_dlq.iter().filter_map(|s| q.remove(*s)).collect(),
                        None => Vec::new(),
                    };
                    if let Some(dlq) = queues.get_mut(&dlq_name) {
                        for m in moved {
                            changes.push(Change::Delete { seq: m.rec.seq });
                            let mut rec = m.rec;
                            rec.queue_id = dlq.rec.id;
                            rec.seq = *next_seq;
                            *next_seq += 1;
                            rec.receive_count = 0;
                            rec.first_receive_ms = None;
                            rec.visible_at_ms = now;
                            rec.dlq_source_arn = Some(source_arn.clone());
                            tracing::debug!(queue = name, message_id = %rec.message_id, "sqs: dead-lettered");
                            changes.push(Change::Insert(rec.clone()));
                            dlq.add(rec, now);
                            dlq.stats.sends.fetch_add(1, Ordering::Relaxed);
                        }
                        dlq.notify.notify_waiters();
                    }
                }
            }
        }
        self.commit_behind(changes);
        Ok(out)
    }

    fn received(&self, queue_id: i64, m: &Msg, fifo: bool) -> Received {
        let r = &m.rec;
        let mut system = BTreeMap::new();
        system.insert("SenderId".to_string(), r.sender_id.clone());
        system.insert("SentTimestamp".to_string(), r.sent_ms.to_string());
        system.insert(
            "ApproximateReceiveCount".to_string(),
            r.receive_count.to_string(),
        );
        system.insert(
            "ApproximateFirstReceiveTimestamp".to_string(),
            r.first_receive_ms.unwrap_or(r.sent_ms).to_string(),
        );
        if let Some(t) = &r.trace_header {
            system.insert("AWSTraceHeader".to_string(), t.clone());
        }
        if let Some(s) = &r.dlq_source_arn {
            system.insert("DeadLetterQueueSourceArn".to_string(), s.clone());
        }
        if let Some(g) = &r.group_id {
            system.insert("MessageGroupId".to_string(), g.clone());
        }
        if fifo {
            system.insert("SequenceNumber".to_string(), sequence_number(r.seq));
            if let Some(d) = &r.dedup_id {
                system.insert("MessageDeduplicationId".to_string(), d.clone());
            }
        }
        Received {
            message_id: r.message_id.clone(),
            receipt_handle: make_handle(queue_id, r.seq, r.receive_count, &r.message_id),
            body: r.body.clone(),
            md5_body: m.md5_body.clone(),
            system,
            attrs: r.attrs.clone(),
        }
    }

    /// `ReceiveMessage`: waits up to the wait time for a message, woken by sends
    /// and by delayed or in-flight messages becoming visible.
    pub async fn receive(
        &self,
        name: &str,
        input: ReceiveInput,
    ) -> Result<Vec<Received>, SqsError> {
        let (notify, default_wait) = {
            let st = self.lock();
            let q = st.queues.get(name).ok_or(SqsError::QueueDoesNotExist)?;
            (
                q.notify.clone(),
                q.rec.attrs.receive_message_wait_time_seconds,
            )
        };
        let wait = input.wait_seconds.unwrap_or(default_wait);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait.into());
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.take(name, &input)?;
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            let until = self.wake_at(name, deadline);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// The earlier of `deadline` and when the queue's next pending message
    /// becomes visible.
    pub fn wake_at(&self, name: &str, deadline: tokio::time::Instant) -> tokio::time::Instant {
        let next = self.lock().queues.get(name).and_then(Queue::next_due);
        match next {
            Some(due) => {
                let ms = (due - now_ms()).max(0) as u64;
                deadline.min(tokio::time::Instant::now() + std::time::Duration::from_millis(ms))
            }
            None => deadline,
        }
    }

    /// Take up to `max` messages now, without waiting (the mapping poller's call).
    pub fn try_receive(
        &self,
        name: &str,
        max: usize,
        visibility_timeout: Option<u32>,
    ) -> Result<Vec<Received>, SqsError> {
        self.take(
            name,
            &ReceiveInput {
                max,
                visibility_timeout,
                wait_seconds: Some(0),
            },
        )
    }

    /// `DeleteMessage`. A handle superseded by a later receive deletes nothing, as
    /// on SQS.
    pub async fn delete_message(&self, name: &str, handle: &str) -> Result<(), SqsError> {
        let (qid, seq, count) = parse_handle(handle)?;
        let change = {
            let mut st = self.lock();
            let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
            if q.rec.id != qid {
                return Err(SqsError::ReceiptHandleIsInvalid(handle.to_string()));
            }
            match q.msgs.get(&seq) {
                Some(m) if m.rec.receive_count == count => {
                    let group = m.rec.group_id.is_some();
                    q.remove(seq);
                    q.stats.deletes.fetch_add(1, Ordering::Relaxed);
                    if group {
                        // A FIFO group may be unblocked.
                        q.notify.notify_waiters();
                    }
                    Some(Change::Delete { seq })
                }
                _ => None,
            }
        };
        match change {
            Some(c) => self.commit(vec![c]).await,
            None => Ok(()),
        }
    }

    /// `ChangeMessageVisibility`.
    pub async fn change_visibility(
        &self,
        name: &str,
        handle: &str,
        timeout: i64,
    ) -> Result<(), SqsError> {
        if !(0..=43_200).contains(&timeout) {
            return Err(SqsError::invalid(format!(
                "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be \
                 between 0 and 43200, if provided."
            )));
        }
        let (qid, seq, count) = parse_handle(handle)?;
        let now = now_ms();
        let change = {
            let mut st = self.lock();
            let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
            if q.rec.id != qid {
                return Err(SqsError::ReceiptHandleIsInvalid(handle.to_string()));
            }
            q.promote(now);
            let Some(m) = q.msgs.get(&seq) else {
                return Err(SqsError::invalid(format!(
                    "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does \
                     not exist or is not available for visibility timeout change."
                )));
            };
            if m.rec.receive_count != count {
                return Err(SqsError::invalid(format!(
                    "Value {handle} for parameter ReceiptHandle is invalid. Reason: The receipt \
                     handle has expired."
                )));
            }
            if !m.in_flight {
                return Err(SqsError::MessageNotInflight);
            }
            let old = m.rec.visible_at_ms;
            q.pending.remove(&(old, seq));
            let m = q.msgs.get_mut(&seq).expect("present");
            m.rec.visible_at_ms = now + timeout * 1000;
            let change = Change::Received {
                seq,
                receive_count: m.rec.receive_count,
                first_receive_ms: m.rec.first_receive_ms,
                visible_at_ms: m.rec.visible_at_ms,
            };
            q.pending.insert((m.rec.visible_at_ms, seq));
            if timeout == 0 {
                q.promote(now);
            }
            // Waiters re-compute when to wake.
            q.notify.notify_waiters();
            change
        };
        self.commit(vec![change]).await
    }

    // ---- message move tasks ----------------------------------------------------

    /// `StartMessageMoveTask`: move a dead-letter queue's messages back to their
    /// sources (or to `destination`), at most `max_per_second` a second. The task
    /// is durable before its handle is returned.
    pub async fn start_move(
        self: &Arc<Self>,
        source_arn: &str,
        destination_arn: Option<&str>,
        max_per_second: Option<u32>,
    ) -> Result<String, SqsError> {
        let source = name_of_arn(source_arn)
            .filter(|n| self.queue_exists(n))
            .ok_or_else(|| {
                SqsError::ResourceNotFound(
                    "The resource that you specified for the SourceArn parameter doesn't exist."
                        .into(),
                )
            })?
            .to_string();
        if let Some(d) = destination_arn {
            if !name_of_arn(d).is_some_and(|n| self.queue_exists(n)) {
                return Err(SqsError::ResourceNotFound(
                    "The resource that you specified for the DestinationArn parameter doesn't exist."
                        .into(),
                ));
            }
        }
        if let Some(r) = max_per_second {
            if !(1..=500).contains(&r) {
                return Err(SqsError::invalid(
                    "Value for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: must \
                     be between 1 and 500.",
                ));
            }
        }
        if self.dead_letter_sources(&source)?.is_empty() {
            return Err(SqsError::invalid(
                "Source queue must be configured as a Dead Letter Queue.",
            ));
        }
        let to_move = {
            let mut st = self.lock();
            let q = st
                .queues
                .get_mut(&source)
                .ok_or(SqsError::QueueDoesNotExist)?;
            q.promote(now_ms());
            q.visible.len() as u64
        };
        let (handle, record) = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            if tasks
                .iter()
                .any(|t| t.source_arn == source_arn && matches!(t.status, "RUNNING" | "CANCELLING"))
            {
                return Err(SqsError::UnsupportedOperation(
                    "There is already a task running. Only one active task is allowed for a \
                     source queue arn at a given time."
                        .into(),
                ));
            }
            let handle = b64().encode(
                serde_json::json!({
                    "taskId": uuid::Uuid::new_v4().to_string(),
                    "sourceArn": source_arn,
                })
                .to_string(),
            );
            let task = MoveTask {
                handle: handle.clone(),
                source_arn: source_arn.to_string(),
                destination_arn: destination_arn.map(str::to_string),
                max_per_second,
                status: "RUNNING",
                moved: 0,
                to_move,
                failure_reason: None,
                started_ms: now_ms(),
                cancel: Arc::new(AtomicBool::new(false)),
            };
            let record = task.record();
            tasks.push(task);
            (handle, record)
        };
        if let Err(e) = self.commit(vec![Change::PutMoveTask(record)]).await {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.retain(|t| t.handle != handle);
            return Err(e);
        }
        let me = self.clone();
        let h = handle.clone();
        tokio::spawn(async move { me.run_move(h, source).await });
        Ok(handle)
    }

    /// Resume the move tasks a stop interrupted (at start): a running task goes
    /// on from the last message it moved; a task being cancelled is cancelled.
    pub fn resume_moves(self: &Arc<Self>) {
        let tasks: Vec<(String, String, &'static str)> = {
            let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks
                .iter()
                .filter(|t| matches!(t.status, "RUNNING" | "CANCELLING"))
                .map(|t| (t.handle.clone(), t.source_arn.clone(), t.status))
                .collect()
        };
        for (handle, source_arn, status) in tasks {
            let me = self.clone();
            match (status, name_of_arn(&source_arn)) {
                ("RUNNING", Some(source)) => {
                    tracing::info!(task = %handle, source = %source_arn, "sqs: resuming message move task");
                    let source = source.to_string();
                    tokio::spawn(async move { me.run_move(handle, source).await });
                }
                _ => {
                    tokio::spawn(async move {
                        me.end_task(&handle, "CANCELLED", None).await;
                    });
                }
            }
        }
    }

    fn update_task(&self, handle: &str, f: impl FnOnce(&mut MoveTask)) -> Option<MoveTaskRecord> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let t = tasks.iter_mut().find(|t| t.handle == handle)?;
        f(t);
        Some(t.record())
    }

    /// Set a task's final status, durably.
    async fn end_task(&self, handle: &str, status: &'static str, reason: Option<String>) {
        let rec = self.update_task(handle, |t| {
            t.status = status;
            t.failure_reason = reason;
        });
        if let Some(rec) = rec {
            if let Err(e) = self.commit(vec![Change::PutMoveTask(rec)]).await {
                tracing::error!(task = %handle, error = %e, "sqs: cannot record a move task's end");
            }
        }
    }

    async fn run_move(self: Arc<Self>, handle: String, source: String) {
        let (dest, rate, cancel, to_move, mut moved) = {
            let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let Some(t) = tasks.iter().find(|t| t.handle == handle) else {
                return;
            };
            (
                t.destination_arn.clone(),
                t.max_per_second,
                t.cancel.clone(),
                t.to_move,
                t.moved,
            )
        };
        // MaxNumberOfMessagesPerSecond: message n is moved no earlier than n/rate
        // seconds after the first (a rate limit, not a poll).
        let began = tokio::time::Instant::now();
        let mut sent = 0u64;
        while moved < to_move {
            if cancel.load(Ordering::SeqCst) {
                self.end_task(&handle, "CANCELLED", None).await;
                return;
            }
            if let Some(r) = rate {
                let at = began + std::time::Duration::from_millis(sent * 1000 / u64::from(r));
                tokio::time::sleep_until(at).await;
                if cancel.load(Ordering::SeqCst) {
                    self.end_task(&handle, "CANCELLED", None).await;
                    return;
                }
            }
            match self.move_one(&source, dest.as_deref()) {
                Ok(Some(mut changes)) => {
                    // The progress commits with the move itself.
                    if let Some(rec) = self.update_task(&handle, |t| t.moved = moved + 1) {
                        changes.push(Change::PutMoveTask(rec));
                    }
                    if let Err(e) = self.commit(changes).await {
                        self.update_task(&handle, |t| t.moved = moved);
                        self.end_task(&handle, "FAILED", Some(e.to_string())).await;
                        return;
                    }
                    moved += 1;
                    sent += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    self.end_task(&handle, "FAILED", Some(e.to_string())).await;
                    return;
                }
            }
        }
        self.end_task(&handle, "COMPLETED", None).await;
    }

    /// Move the first visible message of `source` to `dest` (or back to the queue
    /// it was dead-lettered from).
    fn move_one(&self, source: &str, dest: Option<&str>) -> Result<Option<Vec<Change>>, SqsError> {
        let now = now_ms();
        let mut st = self.lock();
        let State {
            queues, next_seq, ..
        } = &mut *st;
        let q = queues.get_mut(source).ok_or(SqsError::QueueDoesNotExist)?;
        q.promote(now);
        let Some(&seq) = q.visible.first() else {
            return Ok(None);
        };
        let target_arn = dest
            .map(str::to_string)
            .or_else(|| q.msgs.get(&seq).and_then(|m| m.rec.dlq_source_arn.clone()))
            .ok_or_else(|| SqsError::invalid("A message has no source queue to move back to."))?;
        let target = name_of_arn(&target_arn)
            .filter(|n| queues.contains_key(*n))
            .ok_or_else(|| SqsError::ResourceNotFound(format!("{target_arn} does not exist.")))?
            .to_string();
        let q = queues.get_mut(source).ok_or(SqsError::QueueDoesNotExist)?;
        let m = q.remove(seq).expect("visible message present");
        let t = queues.get_mut(&target).ok_or(SqsError::QueueDoesNotExist)?;
        let mut rec = m.rec;
        rec.queue_id = t.rec.id;
        rec.seq = *next_seq;
        *next_seq += 1;
        rec.receive_count = 0;
        rec.first_receive_ms = None;
        rec.visible_at_ms = now;
        rec.dlq_source_arn = None;
        let changes = vec![Change::Delete { seq }, Change::Insert(rec.clone())];
        t.add(rec, now);
        t.notify.notify_waiters();
        Ok(Some(changes))
    }

    /// `CancelMessageMoveTask`: the task stops after the message it is moving;
    /// `CANCELLING` is durable before the answer.
    pub async fn cancel_move(&self, handle: &str) -> Result<u64, SqsError> {
        let (moved, rec) = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let t = tasks
                .iter_mut()
                .find(|t| t.handle == handle)
                .ok_or_else(|| SqsError::ResourceNotFound("Task does not exist.".into()))?;
            if t.status != "RUNNING" {
                return Err(SqsError::ResourceNotFound(
                    "Only active tasks can be cancelled.".into(),
                ));
            }
            t.cancel.store(true, Ordering::SeqCst);
            t.status = "CANCELLING";
            (t.moved, t.record())
        };
        self.commit(vec![Change::PutMoveTask(rec)]).await?;
        Ok(moved)
    }

    /// Tasks of a source queue, newest first.
    pub fn list_moves(&self, source_arn: &str, max: usize) -> Result<Vec<MoveTask>, SqsError> {
        if !name_of_arn(source_arn).is_some_and(|n| self.queue_exists(n)) {
            return Err(SqsError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            ));
        }
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        Ok(tasks
            .iter()
            .rev()
            .filter(|t| t.source_arn == source_arn)
            .take(max)
            .cloned()
            .collect())
    }

    // ---- introspection ---------------------------------------------------------

    pub fn summaries(&self) -> Vec<QueueSummary> {
        let now = now_ms();
        let mut st = self.lock();
        let mut out: Vec<QueueSummary> = st
            .queues
            .values_mut()
            .map(|q| {
                q.promote(now);
                let (visible, in_flight, delayed) = q.counts();
                let oldest = q
                    .msgs
                    .values()
                    .map(|m| m.rec.sent_ms)
                    .min()
                    .map_or(0, |t| (now - t).max(0));
                QueueSummary {
                    name: q.rec.name.clone(),
                    arn: self.arn(&q.rec.name),
                    fifo: q.fifo(),
                    visible,
                    in_flight,
                    delayed,
                    oldest_age_ms: oldest,
                    sends: q.stats.sends.load(Ordering::Relaxed),
                    receives: q.stats.receives.load(Ordering::Relaxed),
                    deletes: q.stats.deletes.load(Ordering::Relaxed),
                    dead_letter_target: q.rec.attrs.redrive().map(|r| r.dead_letter_target_arn),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Up to `max` messages of a queue in order, without receiving them.
    pub fn peek(&self, name: &str, max: usize) -> Result<Vec<Peeked>, SqsError> {
        let now = now_ms();
        let mut st = self.lock();
        let q = st.queues.get_mut(name).ok_or(SqsError::QueueDoesNotExist)?;
        q.promote(now);
        Ok(q.msgs
            .values()
            .take(max)
            .map(|m| Peeked {
                message_id: m.rec.message_id.clone(),
                body: m.rec.body.clone(),
                sent_ms: m.rec.sent_ms,
                receive_count: m.rec.receive_count,
                state: if m.in_flight {
                    "in_flight"
                } else if q.visible.contains(&m.rec.seq) {
                    "visible"
                } else {
                    "delayed"
                },
                group_id: m.rec.group_id.clone(),
            })
            .collect())
    }
}

/// `MD5OfMessageSystemAttributes` for the one system attribute a send may carry.
pub fn system_md5(trace_header: Option<&str>) -> Option<String> {
    let t = trace_header?;
    let attrs = BTreeMap::from([(
        "AWSTraceHeader".to_string(),
        MsgAttr {
            data_type: "String".into(),
            string_value: Some(t.to_string()),
            binary_value: None,
        },
    )]);
    md5_of_attributes(&attrs)
}

#[cfg(test)]
pub(crate) mod tests;
