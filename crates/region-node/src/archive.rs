//! The archive index (issue 15): the final view of every order the
//! district archived (`OrdersArchived`), so an order that left the
//! in-memory state is still served — `GET /v1/orders/{id}`, the order
//! lists and `/v1/me/orders` — with the body it had just before, and a
//! command naming it gets the answer it got then.
//!
//! Two parts, like the log ([`crate::store`]):
//! - the recent entries in two sled trees of the log's database:
//!   `orders_archive` (order id → JSON [`ArchivedOrder`]: the API's
//!   `OrderView`, which only grows by optional fields, and its customer)
//!   and `orders_archive_by_customer` (`len(customer) u16 BE ‖ customer ‖
//!   order id` → empty, for a customer's history newest first: ULID order
//!   ids sort by time);
//! - the rest in immutable sorted files, [`run`]s, under
//!   `<log dir>/orders-archive/`, with a block index in memory (why: sled's
//!   page table grew with every archived order, [`run`] says how much).
//!
//! The writer computes the entries from the state just before it applies
//! `OrdersArchived` and hands them to [`crate::store::EventLog`] with the
//! batch: they are written into sled before the log records and made
//! durable by the same flush and `fdatasync`. An entry written without its
//! event (a crash in between) is harmless: the order is still in memory,
//! which is read first, and the next decision writes the entry again. A
//! replay through an `OrdersArchived` (a restore from a backup, a start
//! without snapshot) writes the entries sled lacks ([`Archive::heal`]).
//!
//! Once sled holds [`FLUSH_ENTRIES_DEFAULT`] entries, the archive's own
//! thread (never the writer) writes them into a run (durable under its name
//! before anything else), lists the run, then removes from sled each entry
//! still as it read it; a crash in between leaves an entry in both, which
//! readers and merges treat as one. Runs are numbered by flush; whenever
//! the newest [`MERGE_FAN_IN`] runs span as many flushes each, they are
//! merged into one (a newer run's entry wins), so a node keeps about
//! `3 × log4(flushes)` runs and rewrites an entry about that many times.
//! Opening deletes temporary files and runs a merged run covers (a crash
//! after the merge was named).
//!
//! Lookups read sled, then the runs newest first: an entry is in the
//! newest place it was written.
//!
//! Must not: be written by anything but the writer and start-up's replay
//! (sled), and the archive's thread (runs, and removing what it flushed).

pub mod run;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};

use protocol::orders::{OrderId, OrderStatus, OrderView};
use serde::{Deserialize, Serialize};

use district::{DistrictState, Order};

pub const ARCHIVE_TREE: &str = "orders_archive";
pub const ARCHIVE_BY_CUSTOMER_TREE: &str = "orders_archive_by_customer";

/// What the index keeps of an archived order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedOrder {
    pub customer: String,
    /// The order as `GET /v1/orders/{id}` showed it to its owner.
    pub view: OrderView,
}

impl ArchivedOrder {
    pub fn of(order: &Order) -> ArchivedOrder {
        ArchivedOrder {
            customer: order.customer.clone(),
            view: crate::http::orders::view(order, true),
        }
    }

    pub fn status(&self) -> OrderStatus {
        self.view.status
    }
}

/// One entry to write, computed by the writer.
#[derive(Debug, Clone)]
pub struct Entry {
    order_id: OrderId,
    customer_key: Vec<u8>,
    value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("archived order {order_id} cannot be read: {source}")]
    Corrupt {
        order_id: String,
        source: serde_json::Error,
    },
    #[error("archived order cannot be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("archive run {0}")]
    Run(String),
}

/// Entries sled holds before the archive's thread moves them into a run:
/// ~40 MB of views, a few days of a busy district's archiving.
pub const FLUSH_ENTRIES_DEFAULT: u64 = 65_536;
/// Runs merged at once, and so the growth from one size of run to the next.
pub const MERGE_FAN_IN: usize = 4;
/// The runs' folder inside the log's directory.
pub const RUNS_DIR: &str = "orders-archive";

fn customer_prefix(customer: &str) -> Vec<u8> {
    // Customer ids are token subjects, far below 64 KiB; a longer one
    // would only share a prefix with nobody.
    let len = u16::try_from(customer.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(2 + customer.len() + 26);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(customer.as_bytes());
    key
}

/// The entries for the orders `OrdersArchived` names, from the state
/// before it is applied (orders it does not hold are skipped, like the
/// event's handler skips them).
pub fn entries(state: &DistrictState, order_ids: &[OrderId]) -> Result<Vec<Entry>, ArchiveError> {
    order_ids
        .iter()
        .filter_map(|id| state.orders().get(id))
        .filter(|o| o.status.is_final())
        .map(|order| Entry::new(&ArchivedOrder::of(order)))
        .collect()
}

impl Entry {
    pub fn new(archived: &ArchivedOrder) -> Result<Entry, ArchiveError> {
        let order_id = archived.view.order_id.clone();
        let mut customer_key = customer_prefix(&archived.customer);
        customer_key.extend_from_slice(order_id.as_bytes());
        Ok(Entry {
            order_id,
            customer_key,
            value: serde_json::to_vec(archived).map_err(ArchiveError::Encode)?,
        })
    }
}

/// The index: cheap to clone, read by the handlers, written through
/// [`Archive::write`] by the writer only. The last clone dropped stops
/// the archive's thread (a merge under way gives up between blocks).
#[derive(Clone)]
pub struct Archive {
    shared: Arc<Shared>,
    _thread: Arc<Thread>,
}

/// What [`Archive::stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub runs: u64,
    pub in_sled: u64,
    pub failures: u64,
}

struct Shared {
    orders: sled::Tree,
    by_customer: sled::Tree,
    dir: PathBuf,
    /// Oldest first, ranges disjoint; replaced whole, so a reader keeps
    /// the list (and the open files) it started with.
    runs: RwLock<Arc<Vec<Arc<run::Run>>>>,
    /// Entries written into sled since the last flush (rewrites count).
    in_sled: AtomicU64,
    flush_entries: AtomicU64,
    /// Flushes and merges that failed (each logged; sled keeps the
    /// entries and the next write tries again).
    failures: AtomicU64,
    stopping: AtomicBool,
    /// One flush or merge at a time (the thread, or a test's call).
    maintaining: Mutex<()>,
}

struct Thread {
    wake: Mutex<Option<mpsc::SyncSender<()>>>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl Drop for Thread {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(lock(&self.wake).take());
        if let Some(handle) = lock(&self.handle).take() {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Archive {
    /// Opens the index of the log in `log_dir` (its sled `db`), removing
    /// temporary files and runs a merged run covers, and starts its thread.
    pub fn open(db: &sled::Db, log_dir: &Path) -> Result<Archive, ArchiveError> {
        let dir = log_dir.join(RUNS_DIR);
        let runs = open_runs(log_dir, &dir)?;
        let orders = db.open_tree(ARCHIVE_TREE)?;
        let in_sled = orders.len() as u64;
        let shared = Arc::new(Shared {
            orders,
            by_customer: db.open_tree(ARCHIVE_BY_CUSTOMER_TREE)?,
            dir,
            runs: RwLock::new(Arc::new(runs)),
            in_sled: AtomicU64::new(in_sled),
            flush_entries: AtomicU64::new(FLUSH_ENTRIES_DEFAULT),
            failures: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            maintaining: Mutex::new(()),
        });
        let (wake, woken) = mpsc::sync_channel(1);
        let worker = shared.clone();
        let handle = std::thread::Builder::new()
            .name("archive".into())
            .spawn(move || maintain_while_open(&worker, &woken))
            .map_err(|e| ArchiveError::Run(format!("thread: {e}")))?;
        let archive = Archive {
            _thread: Arc::new(Thread {
                wake: Mutex::new(Some(wake)),
                handle: Mutex::new(Some(handle)),
                shared: shared.clone(),
            }),
            shared,
        };
        archive.nudge();
        Ok(archive)
    }

    /// Flushes into a run once sled holds `entries` (`[orders]
    /// archive_flush_entries`; at least 1).
    pub fn with_flush_entries(self, entries: u64) -> Archive {
        self.shared
            .flush_entries
            .store(entries.max(1), Ordering::SeqCst);
        self.nudge();
        self
    }

    fn nudge(&self) {
        if self.shared.in_sled.load(Ordering::SeqCst)
            >= self.shared.flush_entries.load(Ordering::SeqCst)
        {
            if let Some(wake) = lock(&self._thread.wake).as_ref() {
                let _ = wake.try_send(()); // full: a wake is pending already
            }
        }
    }

    /// Flushes and merges what is due now, on the caller's thread (tests;
    /// the archive's thread does it by itself).
    pub fn maintain_now(&self) -> Result<(), ArchiveError> {
        maintain(&self.shared)
    }

    /// For the node's metrics: runs, entries waiting in sled (an estimate:
    /// rewrites count twice until the next flush) and failed flushes or
    /// merges since the node started.
    pub fn stats(&self) -> ArchiveStats {
        ArchiveStats {
            runs: self.shared.runs().len() as u64,
            in_sled: self.shared.in_sled.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }

    /// The runs, oldest first, as `(first, last, entries)`.
    pub fn runs(&self) -> Vec<(u64, u64, u64)> {
        self.shared
            .runs()
            .iter()
            .map(|r| (r.first, r.last, r.entries()))
            .collect()
    }

    /// Writes entries into sled (not synced: the caller's flush and
    /// `fdatasync` covers them). The by-customer key goes first, so an
    /// order found by id is always listed too.
    pub fn write(&self, entries: &[Entry]) -> Result<(), sled::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut by_customer = sled::Batch::default();
        let mut orders = sled::Batch::default();
        for e in entries {
            by_customer.insert(e.customer_key.as_slice(), Vec::<u8>::new());
            orders.insert(e.order_id.as_bytes(), e.value.as_slice());
        }
        self.shared.by_customer.apply_batch(by_customer)?;
        self.shared.orders.apply_batch(orders)?;
        self.shared
            .in_sled
            .fetch_add(entries.len() as u64, Ordering::SeqCst);
        self.nudge();
        Ok(())
    }

    /// During a replay: writes the entries of an `OrdersArchived` that
    /// the index lacks (a log restored from a backup). Runs are asked a
    /// block at a time for the ids sled lacks, newest first. Not synced:
    /// the writer's first append syncs them, before any snapshot can cover
    /// the event; a crash before that replays it again.
    pub fn heal(
        &self,
        state: &DistrictState,
        order_ids: &[OrderId],
    ) -> Result<usize, ArchiveError> {
        let mut missing: Vec<&str> = Vec::new();
        for id in order_ids {
            if !self.shared.orders.contains_key(id.as_bytes())? {
                missing.push(id);
            }
        }
        missing.sort_unstable();
        for run in self.shared.runs().iter().rev() {
            if missing.is_empty() {
                break;
            }
            let held = run.holds(&missing)?;
            let mut held = held.into_iter();
            missing.retain(|_| !held.next().unwrap_or(false));
        }
        let missing: Vec<OrderId> = order_ids
            .iter()
            .filter(|id| missing.binary_search(&id.as_str()).is_ok())
            .cloned()
            .collect();
        let entries = entries(state, &missing)?;
        self.write(&entries)?;
        Ok(entries.len())
    }

    /// The archived order, if `order_id` was archived. Blocking (a sled
    /// read, then a block of each run that may hold it).
    pub fn get(&self, order_id: &str) -> Result<Option<ArchivedOrder>, ArchiveError> {
        let json = match self.shared.orders.get(order_id.as_bytes())? {
            Some(bytes) => Some(bytes.to_vec()),
            None => self.in_runs(order_id)?,
        };
        let Some(json) = json else {
            return Ok(None);
        };
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|source| ArchiveError::Corrupt {
                order_id: order_id.to_string(),
                source,
            })
    }

    fn in_runs(&self, order_id: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        for run in self.shared.runs().iter().rev() {
            if let Some(json) = run.get(order_id)? {
                return Ok(Some(json));
            }
        }
        Ok(None)
    }

    /// Archived orders newest first (by id), of one customer or everyone's,
    /// skipping those `skip` says are listed already, at most `limit`.
    /// Each part gives its newest `limit`: the newest of them all are
    /// among those.
    pub fn newest(
        &self,
        customer: Option<&str>,
        limit: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Result<Vec<ArchivedOrder>, ArchiveError> {
        let mut ids = self.newest_in_sled(customer, limit, &skip)?;
        for run in self.shared.runs().iter() {
            ids.extend(run.newest(customer, limit, &skip)?);
        }
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids.iter().rev().take(limit) {
            if let Some(order) = self.get(id)? {
                out.push(order);
            }
        }
        Ok(out)
    }

    fn newest_in_sled(
        &self,
        customer: Option<&str>,
        limit: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, ArchiveError> {
        let ids: Box<dyn Iterator<Item = sled::Result<Vec<u8>>>> = match customer {
            None => Box::new(
                self.shared
                    .orders
                    .iter()
                    .keys()
                    .rev()
                    .map(|k| k.map(|k| k.to_vec())),
            ),
            Some(c) => {
                let prefix = customer_prefix(c);
                let at = prefix.len();
                Box::new(
                    self.shared
                        .by_customer
                        .scan_prefix(prefix)
                        .keys()
                        .rev()
                        .map(move |k| k.map(|k| k[at..].to_vec())),
                )
            }
        };
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            let id = String::from_utf8_lossy(&id?).into_owned();
            if !skip(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }
}

impl Shared {
    fn runs(&self) -> Arc<Vec<Arc<run::Run>>> {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn should_stop(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Replaces the runs `first..=last` covers by `run`.
    fn replace(&self, run: run::Run) {
        let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = runs
            .iter()
            .filter(|r| r.first < run.first || r.last > run.last)
            .cloned()
            .collect();
        list.push(Arc::new(run));
        list.sort_by_key(|r| r.first);
        *runs = Arc::new(list);
    }
}

/// The runs in `dir` (created, its entry synced, the first time), oldest
/// first; temporary files and runs another run covers are deleted.
fn open_runs(log_dir: &Path, dir: &Path) -> Result<Vec<Arc<run::Run>>, ArchiveError> {
    let io = |op: &str, path: &Path, e: std::io::Error| {
        ArchiveError::Run(format!("{}: {op}: {e}", path.display()))
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        run::sync_dir(log_dir)?;
    }
    let mut found = vec![];
    for entry in std::fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
        let path = entry.map_err(|e| io("list", dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
        } else if let Some(range) = run::parse_name(name) {
            found.push((range, path));
        }
    }
    // Widest first, so a run a merge covered comes after the merged one.
    found.sort_by_key(|((first, last), _)| (*first, std::cmp::Reverse(*last)));
    let mut runs: Vec<Arc<run::Run>> = vec![];
    for ((first, last), path) in found {
        if let Some(cover) = runs.last().filter(|r| r.last >= first) {
            if last > cover.last {
                return Err(ArchiveError::Run(format!(
                    "{} overlaps {}",
                    path.display(),
                    cover.path().display()
                )));
            }
            tracing::info!(run = %path.display(), "deleting an archive run a merge covered");
            let _ = std::fs::remove_file(&path);
            continue;
        }
        runs.push(Arc::new(run::Run::open(&path)?));
    }
    Ok(runs)
}

fn maintain_while_open(shared: &Shared, woken: &mpsc::Receiver<()>) {
    while woken.recv().is_ok() {
        if shared.should_stop() {
            break;
        }
        if let Err(e) = maintain(shared) {
            // Sled keeps the entries; the next write tries again.
            shared.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "archive flush or merge failed");
        }
    }
}

/// Flushes sled into a run if it holds enough, then merges while the
/// newest runs are due.
fn maintain(shared: &Shared) -> Result<(), ArchiveError> {
    let _one = lock(&shared.maintaining);
    let flush_entries = shared.flush_entries.load(Ordering::SeqCst);
    // A sled part far above the threshold (a data dir from before runs)
    // moves in runs of a bounded size, each read into memory whole.
    let most = flush_entries.max(FLUSH_ENTRIES_DEFAULT);
    while shared.in_sled.load(Ordering::SeqCst) >= flush_entries && !shared.should_stop() {
        if flush(shared, most)? == 0 {
            break;
        }
    }
    while let Some(inputs) = due_merge(&shared.runs()) {
        if !merge(shared, &inputs)? {
            break;
        }
    }
    Ok(())
}

/// Writes up to `most` of sled's entries into a new run, lists it, then
/// removes each entry still as it was read (one rewritten meanwhile stays,
/// and wins); how many it removed.
fn flush(shared: &Shared, most: u64) -> Result<u64, ArchiveError> {
    #[derive(Deserialize)]
    struct Owner {
        customer: String,
    }
    let mut rows = vec![];
    for item in shared
        .orders
        .iter()
        .take(usize::try_from(most).unwrap_or(usize::MAX))
    {
        let (key, value) = item?;
        let order_id = String::from_utf8_lossy(&key).into_owned();
        let owner: Owner =
            serde_json::from_slice(&value).map_err(|source| ArchiveError::Corrupt {
                order_id: order_id.clone(),
                source,
            })?;
        rows.push(run::Row {
            order_id,
            customer: owner.customer,
            entry: value.to_vec(),
        });
    }
    let mut pairs: Vec<run::Pair> = rows
        .iter()
        .map(|r| (r.customer.clone(), r.order_id.clone()))
        .collect();
    pairs.sort_unstable();
    let number = shared.runs().last().map_or(1, |r| r.last + 1);
    let written = run::write(
        &shared.dir,
        (number, number),
        rows.iter().cloned().map(Ok),
        pairs.into_iter().map(Ok),
        &|| shared.should_stop(),
    )?;
    let Some(written) = written else {
        if rows.is_empty() {
            // The count ran ahead (rewrites count twice): sled is empty.
            shared.in_sled.store(0, Ordering::SeqCst);
        }
        return Ok(0);
    };
    shared.replace(written);
    let mut removed = 0u64;
    for row in &rows {
        let id = row.order_id.as_bytes();
        if shared
            .orders
            .compare_and_swap(id, Some(row.entry.as_slice()), None::<&[u8]>)?
            .is_ok()
        {
            let mut key = customer_prefix(&row.customer);
            key.extend_from_slice(id);
            shared.by_customer.remove(key)?;
            removed += 1;
        }
    }
    // Not an fsync (a crash may bring removed entries back, which the next
    // flush writes again, harmless), but a stop loses none of it.
    shared.orders.flush()?;
    let _ = shared
        .in_sled
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            Some(n.saturating_sub(removed))
        });
    tracing::info!(
        run = number,
        entries = rows.len(),
        removed,
        "archive entries moved into a run"
    );
    Ok(removed)
}

/// The newest [`MERGE_FAN_IN`] runs when they span as many flushes each.
fn due_merge(runs: &[Arc<run::Run>]) -> Option<Vec<Arc<run::Run>>> {
    let tail = runs.get(runs.len().checked_sub(MERGE_FAN_IN)?..)?;
    let width = |r: &run::Run| r.last - r.first + 1;
    let same = tail.iter().all(|r| width(r) == width(&tail[0]));
    same.then(|| tail.to_vec())
}

/// Merges `inputs` (consecutive, oldest first) into one run, lists it,
/// deletes their files; false when it gave up (the node stops).
fn merge(shared: &Shared, inputs: &[Arc<run::Run>]) -> Result<bool, ArchiveError> {
    let (Some(oldest), Some(newest)) = (inputs.first(), inputs.last()) else {
        return Ok(false);
    };
    let rows = merged(inputs.iter().map(|r| r.rows()).collect(), |r| {
        r.order_id.clone()
    });
    let pairs = merged(inputs.iter().map(|r| r.pairs()).collect(), Clone::clone);
    let range = (oldest.first, newest.last);
    let Some(written) = run::write(&shared.dir, range, rows, pairs, &|| shared.should_stop())?
    else {
        return Ok(false);
    };
    let entries = written.entries();
    shared.replace(written);
    for input in inputs {
        // A reader still holding the list keeps the file open.
        if let Err(e) = std::fs::remove_file(input.path()) {
            tracing::warn!(run = %input.path().display(), error = %e, "merged archive run not deleted");
        }
    }
    tracing::info!(
        first = range.0,
        last = range.1,
        entries,
        "archive runs merged"
    );
    Ok(true)
}

/// The items of sorted `parts` (oldest first) in key order, each key once:
/// the newest part's.
fn merged<T, K: Ord>(
    parts: Vec<impl Iterator<Item = Result<T, ArchiveError>>>,
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = Result<T, ArchiveError>> {
    let mut heads: Vec<_> = parts.into_iter().map(Iterator::peekable).collect();
    std::iter::from_fn(move || {
        let mut best: Option<(K, usize)> = None;
        for (i, head) in heads.iter_mut().enumerate() {
            match head.peek() {
                None => {}
                Some(Err(_)) => return head.next(),
                Some(Ok(item)) => {
                    let k = key(item);
                    // `>=`: on a tie the later (newer) part wins.
                    if best.as_ref().is_none_or(|(b, _)| *b >= k) {
                        best = Some((k, i));
                    }
                }
            }
        }
        let (k, winner) = best?;
        for (i, head) in heads.iter_mut().enumerate() {
            if i != winner && matches!(head.peek(), Some(Ok(item)) if key(item) == k) {
                head.next();
            }
        }
        heads[winner].next()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const CUSTOMERS: [&str; 3] = ["ann", "anna", "bo"];

    /// An archived order of `customer` with `status` (JSON as the API has it).
    fn archived(n: u32, customer: &str, status: &str) -> ArchivedOrder {
        let view = serde_json::json!({
            "order_id": format!("01ORDER{n:019}"),
            "status": status,
            "fridge_id": "f-1",
            "lines": [{"meal_id": "m-1", "name": "Soup", "qty": 1, "unit_price": 450}],
            "total": 450,
            "currency": "USD",
            "refund_pending": false,
            "history": [],
        });
        ArchivedOrder {
            customer: customer.to_string(),
            view: serde_json::from_value(view).unwrap(),
        }
    }

    fn open(dir: &Path, flush_entries: u64) -> (sled::Db, Archive) {
        let db = sled::Config::new().path(dir.join("db")).open().unwrap();
        let archive = Archive::open(&db, dir)
            .unwrap()
            .with_flush_entries(flush_entries);
        (db, archive)
    }

    /// Writes orders `from..to` (customers in turn) and returns them.
    fn write(archive: &Archive, range: std::ops::Range<u32>) -> Vec<ArchivedOrder> {
        let orders: Vec<_> = range
            .map(|n| archived(n, CUSTOMERS[n as usize % 3], "picked_up"))
            .collect();
        let entries: Vec<_> = orders.iter().map(|a| Entry::new(a).unwrap()).collect();
        archive.write(&entries).unwrap();
        orders
    }

    /// Every lookup and listing answers as `model` says.
    fn assert_serves(archive: &Archive, model: &BTreeMap<String, ArchivedOrder>) {
        for (id, order) in model {
            assert_eq!(archive.get(id).unwrap().as_ref(), Some(order), "{id}");
        }
        assert_eq!(archive.get("01ORDER9999999999999999999").unwrap(), None);
        assert_eq!(archive.get("").unwrap(), None);
        let newest = |c: Option<&str>, limit| -> Vec<ArchivedOrder> {
            let mut all: Vec<_> = model
                .values()
                .filter(|a| c.is_none_or(|c| a.customer == c))
                .filter(|a| !a.view.order_id.ends_with('7'))
                .cloned()
                .collect();
            all.reverse();
            all.truncate(limit);
            all
        };
        let skip = |id: &str| id.ends_with('7');
        for c in [None, Some("ann"), Some("anna"), Some("bo"), Some("nobody")] {
            for limit in [1, 5, 100] {
                let got = archive.newest(c, limit, skip).unwrap();
                assert_eq!(got, newest(c, limit), "{c:?}, {limit}");
            }
        }
    }

    #[test]
    fn orders_moved_into_merged_runs_are_served_as_from_sled_also_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (db, archive) = open(dir.path(), 10);
        let mut model = BTreeMap::new();
        for batch in 0..23u32 {
            for a in write(&archive, batch * 7..batch * 7 + 7) {
                model.insert(a.view.order_id.to_string(), a);
            }
            archive.maintain_now().unwrap();
            assert_serves(&archive, &model);
        }
        let runs = archive.runs();
        assert!(runs.len() < 8, "merged: {runs:?}");
        assert!(
            runs.iter().any(|(first, last, _)| last - first + 1 == 4),
            "{runs:?}"
        );
        let in_runs: u64 = runs.iter().map(|r| r.2).sum();
        assert!(in_runs >= 150, "most left sled: {runs:?}");
        drop((archive, db));
        let (_db, archive) = open(dir.path(), 10);
        assert_eq!(archive.runs(), runs);
        assert_serves(&archive, &model);
    }

    #[test]
    fn a_rewritten_entry_wins_over_the_run_that_holds_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, archive) = open(dir.path(), 1);
        write(&archive, 0..3);
        archive.maintain_now().unwrap();
        let refunded = archived(1, "anna", "refunded");
        archive.write(&[Entry::new(&refunded).unwrap()]).unwrap();
        assert_eq!(
            archive.get(&refunded.view.order_id).unwrap(),
            Some(refunded.clone())
        );
        for n in 3..6 {
            write(&archive, n * 3..n * 3 + 1); // ann's
            archive.maintain_now().unwrap();
        }
        // Runs 1 (the old entry) and 2 (the new one, flushed by the thread
        // or by the next call) are merged.
        let runs = archive.runs();
        assert_eq!((runs[0].0, runs[0].1), (1, 4), "{runs:?}");
        assert_eq!(
            archive.get(&refunded.view.order_id).unwrap(),
            Some(refunded)
        );
        let listed = archive.newest(Some("anna"), 10, |_| false).unwrap();
        assert_eq!(listed.len(), 1, "listed once: {listed:?}");
        assert_eq!(listed[0].status(), OrderStatus::Refunded);
    }

    #[test]
    fn opening_deletes_runs_a_merge_covered_and_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let runs_dir = dir.path().join(RUNS_DIR);
        let (db, archive) = open(dir.path(), 1);
        let mut model = BTreeMap::new();
        for n in 0..4 {
            for a in write(&archive, n * 3..n * 3 + 3) {
                model.insert(a.view.order_id.to_string(), a);
            }
            archive.maintain_now().unwrap();
        }
        assert_eq!(archive.runs(), vec![(1, 4, 12)]);
        drop((archive, db));
        // What a merge leaves when it stops before deleting its inputs:
        // runs 1..=4 beside the merged one (written here, not copied
        // while the archive's thread may be merging them).
        let orders: Vec<&ArchivedOrder> = model.values().collect();
        for (n, part) in (1..).zip(orders.chunks(3)) {
            let rows: Vec<run::Row> = part
                .iter()
                .map(|a| run::Row {
                    order_id: a.view.order_id.to_string(),
                    customer: a.customer.clone(),
                    entry: serde_json::to_vec(a).unwrap(),
                })
                .collect();
            let mut pairs: Vec<run::Pair> = rows
                .iter()
                .map(|r| (r.customer.clone(), r.order_id.clone()))
                .collect();
            pairs.sort_unstable();
            let rows = rows.into_iter().map(Ok);
            run::write(&runs_dir, (n, n), rows, pairs.into_iter().map(Ok), &|| {
                false
            })
            .unwrap()
            .unwrap();
        }
        assert_eq!(std::fs::read_dir(&runs_dir).unwrap().count(), 5);
        std::fs::write(
            runs_dir.join("00000000000000000005-00000000000000000005.run.tmp"),
            b"half",
        )
        .unwrap();
        let (_db, archive) = open(dir.path(), 1);
        assert_eq!(archive.runs(), vec![(1, 4, 12)]);
        assert_eq!(std::fs::read_dir(&runs_dir).unwrap().count(), 1);
        assert_serves(&archive, &model);
    }

    #[test]
    fn a_damaged_run_is_an_error_never_a_missing_order() {
        let dir = tempfile::tempdir().unwrap();
        let (db, archive) = open(dir.path(), 1);
        let orders = write(&archive, 0..5);
        archive.maintain_now().unwrap();
        drop((archive, db));
        let path = std::fs::read_dir(dir.path().join(RUNS_DIR))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 0xff; // inside the first order block
        std::fs::write(&path, &bytes).unwrap();
        let (_db, archive) = open(dir.path(), 1);
        let err = archive.get(&orders[0].view.order_id).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        bytes.truncate(bytes.len() - 3); // no trailer: not a whole run
        std::fs::write(&path, &bytes).unwrap();
        drop(archive);
        let db = sled::Config::new()
            .path(dir.path().join("db2"))
            .open()
            .unwrap();
        assert!(Archive::open(&db, dir.path()).is_err());
    }

    #[test]
    fn the_archives_thread_flushes_by_itself_once_sled_holds_enough() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, archive) = open(dir.path(), 5);
        write(&archive, 0..4);
        archive.maintain_now().unwrap();
        assert!(archive.runs().is_empty(), "four stay in sled");
        let orders = write(&archive, 4..6);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while archive.runs().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no run after 10 s");
            std::thread::yield_now();
        }
        assert_eq!(archive.runs()[0].2, 6);
        assert_eq!(
            archive.get(&orders[1].view.order_id).unwrap(),
            Some(orders[1].clone())
        );
    }

    #[test]
    fn a_customers_prefix_never_lists_another_customers_orders() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let archive = Archive::open(&db, dir.path()).unwrap();
        // "ann" is a prefix of "anna": the length in front keeps them apart.
        for (customer, id) in [("ann", "01A"), ("anna", "01B"), ("ann", "01C")] {
            let mut key = customer_prefix(customer);
            key.extend_from_slice(id.as_bytes());
            archive
                .shared
                .by_customer
                .insert(key, Vec::<u8>::new())
                .unwrap();
        }
        let ids: Vec<Vec<u8>> = archive
            .shared
            .by_customer
            .scan_prefix(customer_prefix("ann"))
            .keys()
            .map(|k| k.unwrap()[5..].to_vec())
            .collect();
        assert_eq!(ids, vec![b"01A".to_vec(), b"01C".to_vec()]);
    }
}
