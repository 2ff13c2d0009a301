//! The history generator the `startup` and `history` benches share: the
//! real decider on the demo district, recording as a writer does, so the
//! log is the one a node with the default retention would have written.
//!
//! The mix, per order: nine in ten are till sales (the grace window of a
//! till is 0 s, so its timer fires at once), paid and picked up, except one
//! in twenty paid and never collected (unclaimed at its pickup deadline);
//! one in ten is an app order cancelled in its grace window. Every fridge is
//! restocked every [`RESTOCK_EVERY_ORDERS`] orders. Orders are
//! `spacing_secs` of recorded time apart, so a long history spans weeks, and
//! the archive decision (`OrderCommand::Archive`, default retention) is
//! taken every [`ARCHIVE_EVERY_ORDERS`] orders with its index entries
//! written in the same batch, as the writer writes them (`archive.rs`):
//! the hot state holds only the retention window, however long the log.
//! The log's records are sealed into segment files whenever the node's
//! default snapshot policy would have written a snapshot, as the node's
//! snapshot task does (`store::sealed`).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use district::{CatalogCommand, Command, Context, DistrictState, OrderCommand, OrderTimer};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::{DistrictId, EventEnvelope, FridgeId, MealId};
use region_node::snapshot::SnapshotStore;
use region_node::store::EventLog;

/// Events per appended batch while generating (one fsync each).
const GENERATE_BATCH_EVENTS: usize = 20_000;
/// Events between two reopenings of the log. sled 0.34 keeps much of what
/// a process wrote resident (~4.5 bytes per byte on disk here: 3.3 GB after
/// writing 1 M events, 13.5 GB at ~5 M, beyond its 1 GB cache setting),
/// which a node that starts from the log never holds; closing the database
/// gives it back, so the generator's memory stays that of its state.
const REOPEN_EVERY_EVENTS: u64 = 500_000;
/// Orders between two archive decisions (a node's tick decides every
/// second; at a few seconds between orders this is a coarser rhythm, but
/// each decision archives at most 1,024 orders, so 1,000 keeps up).
pub const ARCHIVE_EVERY_ORDERS: u64 = 1_000;
/// Orders between two restocks of a fridge.
const RESTOCK_EVERY_ORDERS: u64 = 40;
pub const DISTRICT: &str = "detroit-downtown";

/// Where generation stops.
#[derive(Clone, Copy)]
pub enum Until {
    /// After this many orders (with all their events).
    Orders(u64),
    /// At exactly this many events: the last order is cut where it is (the
    /// state stays the log's: events past the limit are not applied).
    Events(u64),
}

pub struct Spec {
    /// Recorded time of the first order.
    pub start: DateTime<Utc>,
    pub spacing_secs: i64,
    pub until: Until,
    /// Also write a state snapshot once the log reaches this seq (the first
    /// order boundary at or after it), as the node's snapshot task would.
    pub snapshot_at: Option<u64>,
}

pub struct Generated {
    /// The state after the last event in the log.
    pub state: DistrictState,
    pub orders: u64,
    pub took: Duration,
    /// Commands the decider refused, by error (rare, or the mix is off).
    pub refused: BTreeMap<String, u64>,
}

pub fn context(now: DateTime<Utc>) -> Context {
    Context {
        district_id: DistrictId::from_static(DISTRICT),
        area: district::demo::area(),
        now,
        policy: Default::default(),
        fridges: Default::default(),
        utc_offset_minutes: 0,
        schedule: Default::default(),
    }
}

/// Generates into the log in `log_dir`; snapshots (if asked) into
/// `snapshots`.
pub fn generate(log_dir: &Path, snapshots: &SnapshotStore, spec: &Spec) -> Generated {
    let started = Instant::now();
    let mut log = EventLog::open(log_dir).unwrap();
    let mut reopen_at = REOPEN_EVERY_EVENTS;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (max_orders, limit) = match spec.until {
        Until::Orders(n) => (n, u64::MAX),
        Until::Events(n) => (u64::MAX, n),
    };
    let mut g = Generator {
        state: DistrictState::default(),
        ctx: context(spec.start),
        limit,
        pending: Vec::new(),
        archived: Vec::new(),
        uncollected: VecDeque::new(),
        refused: BTreeMap::new(),
    };
    let demo = district::demo::detroit().unwrap();
    let fridges: Vec<_> = demo.fridges.iter().map(|f| f.fridge_id.clone()).collect();
    let meals: Vec<_> = demo.meals.iter().map(|m| m.meal_id.clone()).collect();
    for cmd in district::demo::commands(demo) {
        g.run(cmd);
    }
    let mut snapshot_at = spec.snapshot_at;
    let policy = region_node::config::SnapshotsConfig::default().policy();
    let mut sealed_at = 0;
    let mut n = 0;
    while n < max_orders && g.state.last_seq() < limit {
        let fridge = &fridges[(n as usize) % fridges.len()];
        if n % RESTOCK_EVERY_ORDERS < fridges.len() as u64 {
            g.restock(fridge, &meals);
        }
        let meal = &meals[(n as usize / fridges.len()) % meals.len()];
        g.ctx.now += chrono::Duration::seconds(spec.spacing_secs);
        g.order(n, fridge, meal);
        if n % ARCHIVE_EVERY_ORDERS == 0 {
            g.run(Command::Order(OrderCommand::Archive));
        }
        n += 1;
        if g.pending.len() >= GENERATE_BATCH_EVENTS {
            rt.block_on(g.flush(&log));
            // As the node does after each snapshot (default policy).
            let seq = g.state.last_seq();
            if policy.is_due(seq - sealed_at, g.state.orders().len() as u64, 0) {
                log.seal_behind(seq).unwrap();
                sealed_at = seq;
            }
            if g.state.last_seq() >= reopen_at {
                drop(log);
                log = EventLog::open(log_dir).unwrap();
                reopen_at += REOPEN_EVERY_EVENTS;
            }
        }
        if snapshot_at.is_some_and(|at| g.state.last_seq() >= at) {
            // The snapshot names the event id at its seq: that record must
            // be in the log first.
            rt.block_on(g.flush(&log));
            snapshots.write(&g.state, &log).unwrap();
            snapshot_at = None;
        }
    }
    rt.block_on(g.flush(&log));
    Generated {
        state: g.state,
        orders: n,
        took: started.elapsed(),
        refused: g.refused,
    }
}

/// The district as the generator drives it, recording as the writer does.
struct Generator {
    state: DistrictState,
    ctx: Context,
    /// The last seq to record (`u64::MAX`: no limit).
    limit: u64,
    pending: Vec<EventEnvelope>,
    archived: Vec<region_node::archive::Entry>,
    /// Paid orders nobody collects, in order of their pickup deadline.
    uncollected: VecDeque<(DateTime<Utc>, OrderId)>,
    refused: BTreeMap<String, u64>,
}

impl Generator {
    fn run(&mut self, cmd: Command) {
        let events = match district::decide(&self.state, cmd, &self.ctx) {
            Ok(events) => events,
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind.split([' ', '(', '{']).next().unwrap_or("?");
                *self.refused.entry(kind.to_string()).or_default() += 1;
                return;
            }
        };
        for event in events {
            if self.state.last_seq() >= self.limit {
                return;
            }
            if let protocol::Event::OrdersArchived { order_ids } = &event {
                let entries = region_node::archive::entries(&self.state, order_ids).unwrap();
                self.archived.extend(entries);
            }
            let env = EventEnvelope {
                event_id: region_node::clock::ulid_at(self.ctx.now),
                seq: self.state.last_seq() + 1,
                stream_id: event.stream_id(),
                stream_version: self.state.stream_version(&event.stream_id()) + 1,
                district_id: self.ctx.district_id.clone(),
                recorded_at: self.ctx.now,
                valid_from: self.ctx.now,
                correlation_id: None,
                causation_id: None,
                schema_version: protocol::codec::LOG_SCHEMA_VERSION,
                event,
            };
            district::evolve(&mut self.state, &env);
            self.pending.push(env);
        }
    }

    async fn flush(&mut self, log: &EventLog) {
        log.append_batch_archiving(&self.pending, &self.archived)
            .await
            .unwrap();
        self.pending.clear();
        self.archived.clear();
    }

    fn restock(&mut self, fridge: &FridgeId, meals: &[MealId]) {
        let counts = meals
            .iter()
            .map(|m| StockCount {
                meal_id: m.clone(),
                units: 12,
            })
            .collect();
        self.run(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: fridge.clone(),
            spec: StockSpec { counts },
        }));
    }

    /// One order's life (the mix is in the module doc). Order ids are ULIDs
    /// of their recorded time, as the node makes them: the archive's
    /// by-customer index lists them newest first by id.
    fn order(&mut self, n: u64, fridge: &FridgeId, meal: &MealId) {
        let order_id = OrderId::parse(region_node::clock::ulid_at(self.ctx.now).to_string())
            .unwrap_or_else(|_| unreachable!("a ULID is an order id"));
        let app = n % 10 == 3;
        self.run(place(
            &order_id,
            fridge,
            meal,
            app,
            &format!("c-{}", n % 5_000),
        ));
        if app {
            return self.run(Command::Order(OrderCommand::Cancel {
                order_id,
                customer: None,
            }));
        }
        // A till's grace window is 0 s: the purchase starts at once.
        self.run(Command::Order(OrderCommand::FireTimer {
            order_id: order_id.clone(),
            timer: OrderTimer::GraceWindowEnd,
        }));
        self.run(Command::RecordPayment {
            result: PaymentResult {
                kind: PaymentKind::Charge,
                order_id: order_id.clone(),
                district_id: self.ctx.district_id.clone(),
                outcome: PaymentOutcome::Approved {
                    reference: format!("ch_{n}"),
                },
            },
            pickup_code: "482913".into(),
        });
        if n % 20 == 7 {
            let due = self.ctx.now + self.ctx.policy.pickup_window;
            self.uncollected.push_back((due, order_id));
        } else {
            self.run(Command::Order(OrderCommand::Pickup {
                order_id,
                pickup_code: "482913".into(),
            }));
        }
        while self
            .uncollected
            .front()
            .is_some_and(|(due, _)| *due <= self.ctx.now)
        {
            let Some((_, order_id)) = self.uncollected.pop_front() else {
                break;
            };
            self.run(Command::Order(OrderCommand::FireTimer {
                order_id,
                timer: OrderTimer::PickupDeadline,
            }));
        }
    }
}

/// A till (or app) order for one unit of `meal`.
pub fn place(
    order_id: &OrderId,
    fridge: &FridgeId,
    meal: &MealId,
    app: bool,
    who: &str,
) -> Command {
    Command::Order(OrderCommand::Place {
        order_id: order_id.clone(),
        customer: who.to_string(),
        channel: if app { Channel::App } else { Channel::Pos },
        request: district::demo::one_unit(fridge.clone(), meal.clone()),
        idempotency: None,
        referral: None,
    })
}

/// The process's resident memory now, from /proc (0 where unreadable).
pub fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Whether `dir` holds a finished generation (its `complete` marker);
/// removes a half-written one so it is generated again.
pub fn is_complete(dir: &Path) -> bool {
    if dir.join("complete").exists() {
        return true;
    }
    let _ = std::fs::remove_dir_all(dir);
    false
}
