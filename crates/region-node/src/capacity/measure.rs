//! Measures what one occurrence of each flow costs, in bytes, by running it
//! through the real district core: the demo district (`district::demo`),
//! `district::decide`/`evolve` with the node's default policies, envelopes
//! built as the writer builds them, log records encoded by
//! `protocol::codec::encode_log_record` (what `store.rs` writes), WebSocket
//! frames from `district::push::changes` (what the hub sends), HTTP bodies
//! from the route's own serde types, fridge uploads in both vendor dialects
//! parsed by `fridge_acl` before the decider sees them, and payment
//! messages as the relay and the payments service encode them (postcard).
//!
//! Nothing here is a constant copied from a run: change an event or a
//! message and the planner's answer changes with it.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use district::promotions::When;
use district::{
    CatalogCommand, Command, Context, DistrictState, FridgeCommand, OrderCommand, OrderTimer,
    PromotionCommand, ScheduleCommand,
};
use fridge_acl::{Dialect, SecretUsed};
use protocol::catalog::{StockCount, StockSpec};
use protocol::geo::GeoPoint;
use protocol::orders::{Channel, OrderId, OrderItem, OrderStatus, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::schedule::{KitchenEventSpec, KitchenStage, PlanDay, PlanSpec};
use protocol::{DistrictId, EventEnvelope, FridgeId, KitchenId, MealId, PlanId};
use serde::Serialize;

use super::{Cost, Sizes};
use crate::push::Route;

/// Occurrences of each flow averaged into its cost: two per demo fridge,
/// so every fridge and both dialects take part.
const REPETITIONS: usize = 24;
/// Subscribers whose two-week plans are run to measure a plan day.
const PLAN_SUBSCRIBERS: usize = 3;
/// Days the plan simulation runs: two weeks of plan plus the
/// materialisation horizon before it.
const PLAN_SIMULATED_DAYS: i64 = 18;
/// Sub-second part the measurement's clock starts at and moves by (a
/// node's timestamps carry nine digits of fraction).
const CLOCK_START_NANOS: u32 = 330_575_601;
const CLOCK_STEP_NANOS: i64 = 1_234_567;
/// A pickup code as the node draws them (six digits).
const PICKUP_CODE: &str = "482913";
/// The id of the demo district the measurement runs as.
const DISTRICT: &str = "detroit-downtown";
/// Units a kitchen brings per meal on a restock, and meals per restock
/// (`fridge-sim`'s refill: up to 3 meals, up to 12 units).
const RESTOCK_UNITS: u32 = 6;
const RESTOCK_MEALS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("the demo district does not parse: {0}")]
    Demo(#[from] serde_json::Error),
    #[error("the district refused a measured command ({what}): {error}")]
    Refused {
        what: &'static str,
        error: district::DomainError,
    },
    #[error("a log record does not encode: {0}")]
    Encode(#[from] protocol::codec::CodecError),
    #[error("a measured fridge upload does not parse: {0}")]
    Telemetry(String),
    #[error("the measurement went wrong: {0}")]
    Broken(String),
}

/// One demo fridge as the measurement drives it.
struct SimFridge {
    fridge_id: FridgeId,
    dialect: Dialect,
    /// The fridge's report counter (`seq` of its next report).
    next_seq: u64,
}

/// The district being measured: its state, clock and what the current
/// flow has cost so far.
struct Sim {
    state: DistrictState,
    ctx: Context,
    prefixes: Vec<String>,
    fridges: Vec<SimFridge>,
    meals: Vec<(MealId, KitchenId)>,
    tally: Cost,
    /// Every batch recorded (one per command, as a quiet writer appends
    /// them), for the sled space measurement.
    recorded: Vec<Vec<EventEnvelope>>,
    counter: u64,
}

/// Runs every flow and returns what each costs.
pub fn measure() -> Result<(Sizes, Vec<Vec<EventEnvelope>>), MeasureError> {
    let mut sim = Sim::new()?;
    // The demo district's set-up is not what a district writes every day.
    let setup_batches = sim.recorded.len();
    let catalog_read = sim.catalog_read()?;
    let (app_order, app_ids) = sim.flow(|s, i| s.order(i, Channel::App))?;
    let (pos_order, _) = sim.flow(|s, i| s.order(i, Channel::Pos))?;
    let (app_cancel, _) = sim.flow(|s, i| s.cancelled_order(i))?;
    let (pickup, _) = sim.flow(|s, i| s.pick_up(&app_ids[i]))?;
    let (temperature_upload, _) = sim.flow(|s, i| s.temperature_upload(i))?;
    let (scan_upload, _) = sim.flow(|s, i| s.scan_upload(i))?;
    let (restock, _) = sim.flow(|s, i| s.restock(i))?;
    let plan_day = sim.plan_days()?;
    let sizes = Sizes {
        app_order,
        app_cancel,
        pos_order,
        pickup,
        plan_day,
        temperature_upload,
        scan_upload,
        restock,
        catalog_read,
        disk: None,
    };
    sim.recorded.drain(..setup_batches);
    Ok((sizes, sim.recorded))
}

fn json_len<T: Serialize>(value: &T) -> f64 {
    serde_json::to_vec(value).map_or(0, |v| v.len()) as f64
}

/// The JSON body a client sends: the request type without its empty
/// optional fields (an app does not send `"coupon": null`).
fn body_len<T: Serialize>(value: &T) -> f64 {
    let mut v = serde_json::to_value(value).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut v {
        map.retain(|_, field| !field.is_null());
    }
    json_len(&v)
}

impl Sim {
    fn new() -> Result<Sim, MeasureError> {
        let demo = district::demo::detroit()?;
        let fridges = demo
            .fridges
            .iter()
            .map(|f| SimFridge {
                fridge_id: f.fridge_id.clone(),
                dialect: Dialect::ALL
                    .into_iter()
                    .find(|d| d.as_str() == f.spec.vendor)
                    .unwrap_or(Dialect::FrostlineJson),
                next_seq: 1,
            })
            .collect();
        let meals = demo
            .meals
            .iter()
            .map(|m| (m.meal_id.clone(), m.spec.kitchen_id.clone()))
            .collect();
        let mut sim = Sim {
            state: DistrictState::default(),
            ctx: Context {
                district_id: DistrictId::from_static(DISTRICT),
                area: district::demo::area(),
                // A Monday morning, so a plan starts within the week.
                now: Utc
                    .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
                    .single()
                    .unwrap_or_default()
                    + Duration::nanoseconds(i64::from(CLOCK_START_NANOS)),
                policy: Default::default(),
                fridges: Default::default(),
                utc_offset_minutes: 0,
                schedule: Default::default(),
            },
            prefixes: district::demo::PREFIXES
                .iter()
                .map(|p| p.to_string())
                .collect(),
            fridges,
            meals,
            tally: Cost::default(),
            recorded: Vec::new(),
            counter: 0,
        };
        for cmd in district::demo::commands(demo) {
            sim.run("demo district", cmd)?;
        }
        // The node records its `[loyalty]` rules at start-up.
        let rules = crate::config::LoyaltyConfig::default().rules();
        sim.run(
            "loyalty rules",
            Command::Promotion(PromotionCommand::DefineLoyaltyRules { rules }),
        )?;
        sim.stock_everything()?;
        Ok(sim)
    }

    /// Runs `flow` [`REPETITIONS`] times unmeasured (a fridge's first scan,
    /// a customer's first order set up what later ones reuse), then
    /// [`REPETITIONS`] times more, and returns the second run's average
    /// cost and both runs' outputs (`i` counts on across them).
    fn flow<T>(
        &mut self,
        mut flow: impl FnMut(&mut Sim, usize) -> Result<T, MeasureError>,
    ) -> Result<(Cost, Vec<T>), MeasureError> {
        let mut out = Vec::with_capacity(2 * REPETITIONS);
        for i in 0..REPETITIONS {
            out.push(flow(self, i)?);
        }
        let state_before = self.state_bytes();
        self.tally = Cost::default();
        for i in REPETITIONS..2 * REPETITIONS {
            out.push(flow(self, i)?);
        }
        let mut cost = std::mem::take(&mut self.tally);
        cost.state_bytes = self.state_bytes() - state_before;
        Ok((cost.scaled(1.0 / REPETITIONS as f64), out))
    }

    fn state_bytes(&self) -> f64 {
        postcard::to_stdvec(&self.state).map_or(0, |v| v.len()) as f64
    }

    /// Decides `cmd`, records its events as the writer does (one command,
    /// one batch) and adds their log records and WebSocket frames to the
    /// tally.
    fn run(&mut self, what: &'static str, cmd: Command) -> Result<(), MeasureError> {
        let events = district::decide(&self.state, cmd, &self.ctx)
            .map_err(|error| MeasureError::Refused { what, error })?;
        let before = self.state.clone();
        let mut batch = Vec::with_capacity(events.len());
        let mut cause = None;
        for event in events {
            let stream_id = event.stream_id();
            let env = EventEnvelope {
                event_id: crate::clock::ulid_at(self.ctx.now),
                seq: self.state.last_seq() + 1,
                stream_version: self.state.stream_version(&stream_id) + 1,
                stream_id,
                district_id: self.ctx.district_id.clone(),
                recorded_at: self.ctx.now,
                valid_from: self.ctx.now,
                correlation_id: None,
                causation_id: cause,
                schema_version: protocol::codec::LOG_SCHEMA_VERSION,
                event,
            };
            district::evolve(&mut self.state, &env);
            cause = Some(env.event_id);
            self.tally.log_records += 1.0;
            self.tally.log_record_bytes += protocol::codec::encode_log_record(&env)?.len() as f64;
            batch.push(env);
        }
        self.count_pushes(&before, &batch);
        if !batch.is_empty() {
            self.recorded.push(batch);
        }
        Ok(())
    }

    fn count_pushes(&mut self, before: &DistrictState, batch: &[EventEnvelope]) {
        if batch.is_empty() {
            return;
        }
        let pushes = crate::push::changes(
            before,
            &self.state,
            batch,
            DISTRICT,
            &self.prefixes,
            self.ctx.utc_offset_minutes,
        );
        let notes = crate::push::notification_changes(before, &self.state);
        for push in pushes.iter().chain(&notes) {
            let bytes = push.frame.len() as f64;
            let t = &mut self.tally;
            let (frames, total) = match push.route {
                Route::Fridge { .. } => (&mut t.push_fridge_frames, &mut t.push_fridge_bytes),
                Route::District => (&mut t.push_district_frames, &mut t.push_district_bytes),
                Route::Customer(_) => (&mut t.push_customer_frames, &mut t.push_customer_bytes),
            };
            *frames += 1.0;
            *total += bytes;
        }
    }

    /// Moves the clock on. A node's clock has nanoseconds, and a time
    /// in a record is its RFC 3339 text, so whole seconds would make
    /// every record ten bytes shorter than the node's.
    fn tick(&mut self, secs: i64) {
        self.ctx.now += Duration::seconds(secs) + Duration::nanoseconds(CLOCK_STEP_NANOS);
    }

    fn stock_everything(&mut self) -> Result<(), MeasureError> {
        let counts: Vec<StockCount> = self
            .meals
            .iter()
            .map(|(meal_id, _)| StockCount {
                meal_id: meal_id.clone(),
                units: 500,
            })
            .collect();
        for i in 0..self.fridges.len() {
            let fridge_id = self.fridges[i].fridge_id.clone();
            let spec = StockSpec {
                counts: counts.clone(),
            };
            self.run(
                "stock",
                Command::Catalog(CatalogCommand::SetStock { fridge_id, spec }),
            )?;
        }
        Ok(())
    }

    /// `GET /v1/catalog` at Campus Martius with the default radius: the
    /// body of a full answer (a 304 revalidation has none).
    fn catalog_read(&mut self) -> Result<Cost, MeasureError> {
        let at = GeoPoint::new(42.3316, -83.0466)
            .map_err(|e| MeasureError::Broken(format!("demo point: {e:?}")))?;
        let when = When {
            local: self.ctx.local_now(),
            utc: self.ctx.now,
        };
        let view = district::query::catalog_near(
            &self.state,
            &self.ctx.district_id,
            &at,
            crate::config::RADIUS_M_DEFAULT,
            &when,
        );
        Ok(Cost {
            api_requests: 1.0,
            api_bytes: json_len(&view),
            ..Cost::default()
        })
    }

    fn next_order_id(&mut self) -> OrderId {
        // Ids are the node clock's ULIDs (26 characters).
        OrderId::from(crate::clock::ulid_at(self.ctx.now))
    }

    fn place(&mut self, i: usize, channel: Channel) -> Result<OrderId, MeasureError> {
        self.counter += 1;
        let fridge_id = self.fridges[i % self.fridges.len()].fridge_id.clone();
        let meal_id = self.meals[(i * 7) % self.meals.len()].0.clone();
        let order_id = self.next_order_id();
        let request = PlaceOrder {
            fridge_id,
            items: vec![OrderItem { meal_id, qty: 1 }],
            coupon: None,
            share_code: None,
            points: None,
            payment_method: "tok_visa".into(),
            pickup_date: None,
        };
        self.tally.api_requests += 1.0;
        self.tally.api_bytes += body_len(&request);
        // An app sends an Idempotency-Key (a UUID); `larder-load`'s tills,
        // like the node's own tests, send none. Customers come back: the
        // warm-up run's first orders set up what their later ones reuse.
        let (customer, idempotency) = match channel {
            Channel::App => (
                format!("cust-{:06}", i % REPETITIONS),
                Some((format!("{:08x}-0000-4000-8000-{:012x}", i, self.counter), 0)),
            ),
            Channel::Pos => (format!("pos-{}", i % 64), None),
        };
        self.run(
            "place an order",
            Command::Order(OrderCommand::Place {
                order_id: order_id.clone(),
                customer,
                channel,
                request,
                idempotency,
                referral: None,
            }),
        )?;
        let order = self.order_now(&order_id)?;
        self.tally.api_bytes += json_len(&crate::http::orders::accepted(&order));
        Ok(order_id)
    }

    fn order_now(&self, order_id: &str) -> Result<district::orders::book::Order, MeasureError> {
        self.state
            .orders()
            .get(order_id)
            .cloned()
            .ok_or_else(|| MeasureError::Broken(format!("order {order_id} is not in the book")))
    }

    /// One order's life up to its purchase: confirm, the grace window's
    /// end, the charge over NATS and its result, the loyalty ledger's
    /// answer (app orders), and the app reading its pickup code.
    fn order(&mut self, i: usize, channel: Channel) -> Result<OrderId, MeasureError> {
        let order_id = self.place(i, channel)?;
        self.tick(i64::from(GRACE_SECS_MAX));
        self.run(
            "grace window end",
            Command::Order(OrderCommand::FireTimer {
                order_id: order_id.clone(),
                timer: OrderTimer::GraceWindowEnd,
            }),
        )?;
        self.pay_what_is_owed()?;
        self.settle_loyalty()?;
        if channel == Channel::App {
            let order = self.order_now(&order_id)?;
            self.tally.api_requests += 1.0;
            self.tally.api_bytes += json_len(&crate::http::orders::view(&order, true));
        }
        Ok(order_id)
    }

    /// An app order cancelled in its grace window.
    fn cancelled_order(&mut self, i: usize) -> Result<(), MeasureError> {
        let order_id = self.place(i, Channel::App)?;
        self.tick(2);
        self.run(
            "cancel in the grace window",
            Command::Order(OrderCommand::Cancel {
                order_id: order_id.clone(),
                customer: None,
            }),
        )?;
        let order = self.order_now(&order_id)?;
        self.tally.api_requests += 1.0;
        self.tally.api_bytes += json_len(&crate::http::orders::view(&order, false));
        self.settle_loyalty()
    }

    /// Answers every payment request in the outbox as the payments service
    /// does (approved), counting both messages on NATS.
    fn pay_what_is_owed(&mut self) -> Result<(), MeasureError> {
        let owed: Vec<_> = self
            .state
            .outbox()
            .iter()
            .map(|(_, request)| request.clone())
            .collect();
        for request in owed {
            let request_bytes = protocol::codec::to_postcard(&request)?;
            let subject = bus::request_subject(DISTRICT);
            let msg_id = request.msg_id();
            self.tally.nats_messages += 1.0;
            self.tally.nats_bytes += nats_message_bytes(&subject, Some(&msg_id), &request_bytes);
            let result = PaymentResult {
                kind: request.kind,
                order_id: request.order_id.clone(),
                district_id: request.district_id.clone(),
                // The sandbox provider's references (`payments::provider`).
                outcome: PaymentOutcome::Approved {
                    reference: match request.kind {
                        PaymentKind::Charge => format!("sbx_ch_{}", request.order_id),
                        PaymentKind::Refund => format!("sbx_re_{}", request.order_id),
                    },
                },
            };
            let result_bytes = protocol::codec::to_postcard(&result)?;
            self.tally.nats_messages += 1.0;
            self.tally.nats_bytes +=
                nats_message_bytes(&bus::result_subject(DISTRICT), None, &result_bytes);
            self.tick(1);
            self.run(
                "payment result",
                Command::RecordPayment {
                    result,
                    pickup_code: PICKUP_CODE.into(),
                },
            )?;
        }
        Ok(())
    }

    /// The bonus-point ledger's answer for what the order queued (the
    /// node's `fleet::points` records `LoyaltyApplied`).
    fn settle_loyalty(&mut self) -> Result<(), MeasureError> {
        let op_ids: Vec<String> = self.state.loyalty().due().keys().cloned().collect();
        if op_ids.is_empty() {
            return Ok(());
        }
        self.run(
            "loyalty applied",
            Command::Promotion(PromotionCommand::LoyaltyApplied { op_ids }),
        )
    }

    /// The customer opens the fridge with the pickup code and takes the
    /// order: a door session in the fridge's dialect.
    fn pick_up(&mut self, order_id: &str) -> Result<(), MeasureError> {
        let order = self.order_now(order_id)?;
        let code = order
            .pickup_code
            .clone()
            .ok_or_else(|| MeasureError::Broken(format!("order {order_id} has no pickup code")))?;
        let taken: Vec<(MealId, u32)> = order
            .lines
            .iter()
            .map(|l| (l.meal_id.clone(), l.qty))
            .collect();
        let door = Door {
            who: format!("P:{code}"),
            taken,
            added: vec![],
        };
        let index = self.fridge_index(&order.fridge_id)?;
        self.tick(30);
        self.upload(index, &[ReportKind::Door(door)])?;
        if self.order_now(order_id)?.status != OrderStatus::PickedUp {
            return Err(MeasureError::Broken(format!(
                "order {order_id} was not picked up by its door session"
            )));
        }
        Ok(())
    }

    fn fridge_index(&self, fridge_id: &str) -> Result<usize, MeasureError> {
        self.fridges
            .iter()
            .position(|f| *f.fridge_id == *fridge_id)
            .ok_or_else(|| MeasureError::Broken(format!("fridge {fridge_id} is not a demo fridge")))
    }

    fn temperature_upload(&mut self, i: usize) -> Result<(), MeasureError> {
        self.tick(5);
        let tenths_c = 30 + (i % 10) as i32;
        self.upload(i % self.fridges.len(), &[ReportKind::Temp(tenths_c)])
    }

    /// A full scan of what the fridge holds (the counts it already has: a
    /// scan between sales changes nothing but the cursor).
    fn scan_upload(&mut self, i: usize) -> Result<(), MeasureError> {
        self.tick(5);
        let index = i % self.fridges.len();
        let fridge_id = self.fridges[index].fridge_id.clone();
        let counts: Vec<(MealId, u32)> = self
            .meals
            .iter()
            .map(|(m, _)| {
                let level = self.state.stock_level(&fridge_id, m);
                (m.clone(), level.on_hand)
            })
            .filter(|(_, units)| *units > 0)
            .collect();
        self.upload(index, &[ReportKind::Scan(counts)])
    }

    /// Kitchen staff refill a fridge: a badge door session adding units.
    fn restock(&mut self, i: usize) -> Result<(), MeasureError> {
        self.tick(60);
        let added = (0..RESTOCK_MEALS)
            .map(|k| {
                let meal = &self.meals[(i * RESTOCK_MEALS + k) % self.meals.len()].0;
                (meal.clone(), RESTOCK_UNITS)
            })
            .collect();
        let door = Door {
            who: "B:B-17".into(),
            taken: vec![],
            added,
        };
        self.upload(i % self.fridges.len(), &[ReportKind::Door(door)])
    }

    /// Encodes `reports` in the fridge's dialect, parses them as the node's
    /// ACL does, and submits the batch; counts the upload (body and the
    /// signature headers) and the node's answer.
    fn upload(&mut self, index: usize, reports: &[ReportKind]) -> Result<(), MeasureError> {
        let now = self.ctx.now;
        let fridge = &mut self.fridges[index];
        let first_seq = fridge.next_seq;
        fridge.next_seq += reports.len() as u64;
        let body = encode_upload(fridge.dialect, &fridge.fridge_id, now, first_seq, reports);
        let batch = fridge
            .dialect
            .parse(body.as_bytes())
            .map_err(|e| MeasureError::Telemetry(format!("{e:?}: {body}")))?;
        let fridge_id = fridge.fridge_id.clone();
        self.tally.telemetry_requests += 1.0;
        self.tally.telemetry_bytes += (body.len() + signature_headers_len(now)) as f64;
        let batches_before = self.recorded.len();
        self.run(
            "fridge upload",
            Command::Fridge(FridgeCommand::Telemetry {
                fridge_id,
                batch,
                secret_used: SecretUsed::Current,
            }),
        )?;
        // The 202 answer is the outcome the decider recorded.
        let answer = self.recorded[batches_before..]
            .iter()
            .flatten()
            .find_map(|e| match &e.event {
                protocol::Event::FridgeTelemetryReceived { outcome_json, .. } => {
                    Some(outcome_json.len())
                }
                _ => None,
            })
            .unwrap_or(0);
        self.tally.telemetry_bytes += answer as f64;
        Ok(())
    }
}

/// The longest app grace window the policy allows: the timer fires after it
/// whatever the channel (a POS order is already paying by then).
const GRACE_SECS_MAX: u32 = 30;

/// Bytes of one message on the NATS wire as the client publishes it:
/// `HPUB`/`PUB` line, headers (`Nats-Msg-Id` for de-duplication), payload
/// and line ends. The JetStream ack and the consumer's `+ACK` are not
/// counted (they are a few dozen bytes each way).
fn nats_message_bytes(subject: &str, msg_id: Option<&str>, payload: &[u8]) -> f64 {
    let reply = "_INBOX.0123456789abcdefghijkl.0123456789abcdefghijkl";
    let (proto, headers) = match msg_id {
        Some(id) => {
            let headers = format!("NATS/1.0\r\nNats-Msg-Id: {id}\r\n\r\n");
            let total = headers.len() + payload.len();
            (
                format!("HPUB {subject} {reply} {} {total}\r\n", headers.len()),
                headers.len(),
            )
        }
        None => (format!("PUB {subject} {reply} {}\r\n", payload.len()), 0),
    };
    (proto.len() + headers + payload.len() + 2) as f64
}

/// `x-larder-timestamp` and `x-larder-signature` (hex HMAC-SHA256) as
/// header lines.
fn signature_headers_len(now: DateTime<Utc>) -> usize {
    let stamp = format!("x-larder-timestamp: {}\r\n", now.timestamp());
    let signature = format!("x-larder-signature: {}\r\n", "0".repeat(64));
    stamp.len() + signature.len()
}

struct Door {
    /// `P:<code>`, `B:<badge>` or `U` (the coldline spelling).
    who: String,
    taken: Vec<(MealId, u32)>,
    added: Vec<(MealId, u32)>,
}

enum ReportKind {
    Temp(i32),
    Scan(Vec<(MealId, u32)>),
    Door(Door),
}

/// A batch as firmware writes it (docs/fridge-dialects.md).
fn encode_upload(
    dialect: Dialect,
    fridge_id: &str,
    at: DateTime<Utc>,
    first_seq: u64,
    reports: &[ReportKind],
) -> String {
    match dialect {
        Dialect::ColdlineLines => coldline(fridge_id, at, first_seq, reports),
        Dialect::FrostlineJson => frostline(fridge_id, at, first_seq, reports),
    }
}

fn coldline(fridge_id: &str, at: DateTime<Utc>, first_seq: u64, reports: &[ReportKind]) -> String {
    let ts = at.timestamp();
    let list = |l: &[(MealId, u32)]| {
        l.iter()
            .map(|(m, u)| format!("{m}:{u}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = format!("H|{fridge_id}|{ts}\n");
    for (n, report) in reports.iter().enumerate() {
        let seq = first_seq + n as u64;
        let line = match report {
            ReportKind::Temp(tenths) => format!("T|{seq}|{ts}|{tenths}"),
            ReportKind::Scan(counts) => format!("S|{seq}|{ts}|{}", list(counts)),
            ReportKind::Door(d) => format!(
                "D|{seq}|{ts}|{}|{}|{}",
                d.who,
                list(&d.taken),
                list(&d.added)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn frostline(fridge_id: &str, at: DateTime<Utc>, first_seq: u64, reports: &[ReportKind]) -> String {
    let ts = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let reports: Vec<serde_json::Value> = reports
        .iter()
        .enumerate()
        .map(|(n, report)| {
            let seq = first_seq + n as u64;
            let mut r = match report {
                ReportKind::Temp(tenths) => {
                    serde_json::json!({"kind": "temp", "celsius": f64::from(*tenths) / 10.0})
                }
                ReportKind::Scan(counts) => {
                    serde_json::json!({"kind": "scan", "counts": meal_map(counts)})
                }
                ReportKind::Door(d) => door_json(d),
            };
            r["seq"] = seq.into();
            r["at"] = ts.clone().into();
            r
        })
        .collect();
    serde_json::json!({"fridge_id": fridge_id, "batch_ts": ts, "reports": reports}).to_string()
}

/// `{meal_id: units}` as frostline writes it.
fn meal_map(l: &[(MealId, u32)]) -> serde_json::Map<String, serde_json::Value> {
    l.iter()
        .map(|(m, u)| (m.to_string(), serde_json::json!(u)))
        .collect()
}

fn door_json(d: &Door) -> serde_json::Value {
    let mut r = match d.who.split_once(':') {
        Some(("P", code)) => {
            serde_json::json!({"kind": "door", "who": "pickup_code", "code": code})
        }
        Some(("B", badge)) => serde_json::json!({"kind": "door", "who": "staff", "badge": badge}),
        _ => serde_json::json!({"kind": "door", "who": "unknown"}),
    };
    if !d.taken.is_empty() {
        r["taken"] = meal_map(&d.taken).into();
    }
    if !d.added.is_empty() {
        r["added"] = meal_map(&d.added).into();
    }
    r
}

impl Sim {
    /// Subscribers on two-week lunch plans (Monday to Friday) at demo
    /// fridges: the daily materialisation tick, the weekly charge and its
    /// result, the kitchen's three stages and the pickup through the
    /// fridge door. The cost of one delivered plan day, plan creation and
    /// charges included.
    fn plan_days(&mut self) -> Result<Cost, MeasureError> {
        let state_before = self.state_bytes();
        self.tally = Cost::default();
        let policy = scheduler::Policy::default();
        for n in 0..PLAN_SUBSCRIBERS {
            self.create_plan(n, policy)?;
        }
        let mut delivered = 0usize;
        let first_day = self.ctx.now.date_naive();
        for day in 0..PLAN_SIMULATED_DAYS {
            let date = first_day + Duration::days(day);
            self.ctx.now = at_hour(date, 6);
            self.run(
                "schedule tick",
                Command::Schedule(ScheduleCommand::Tick { policy }),
            )?;
            self.pay_what_is_owed()?;
            self.kitchen_stages(date, policy)?;
            self.ctx.now = at_hour(date, 12);
            delivered += self.pick_up_plan_orders(date)?;
        }
        if delivered == 0 {
            return Err(MeasureError::Broken(
                "the plans delivered no meal in the simulated weeks".into(),
            ));
        }
        let mut cost = std::mem::take(&mut self.tally);
        cost.state_bytes = self.state_bytes() - state_before;
        Ok(cost.scaled(1.0 / delivered as f64))
    }

    fn create_plan(&mut self, n: usize, policy: scheduler::Policy) -> Result<(), MeasureError> {
        let fridge_id = self.fridges[n % self.fridges.len()].fridge_id.clone();
        let start_date =
            scheduler::plan::earliest_effective(self.ctx.now, &Default::default(), &policy);
        let days = (1..=5)
            .map(|weekday| PlanDay {
                weekday,
                meal_id: self.meals[(n + weekday as usize) % self.meals.len()]
                    .0
                    .clone(),
            })
            .collect();
        let spec = PlanSpec {
            fridge_id,
            days,
            start_date,
            end_date: start_date + Duration::days(13),
            payment_method: "tok_visa".into(),
        };
        self.tally.api_requests += 1.0;
        self.tally.api_bytes += json_len(&spec);
        let plan_id = PlanId::from(crate::clock::ulid_at(self.ctx.now));
        self.run(
            "create a plan",
            Command::Schedule(ScheduleCommand::CreatePlan {
                plan_id,
                customer: format!("sub-{n:06}"),
                spec,
                policy,
            }),
        )
    }

    /// Prepared, dispatched, placed in the fridge: one request per kitchen
    /// and stage for the day's orders.
    fn kitchen_stages(
        &mut self,
        date: chrono::NaiveDate,
        policy: scheduler::Policy,
    ) -> Result<(), MeasureError> {
        let mut kitchens: Vec<KitchenId> = self.meals.iter().map(|(_, k)| k.clone()).collect();
        kitchens.sort();
        kitchens.dedup();
        for stage in [
            KitchenStage::Prepared,
            KitchenStage::Dispatched,
            KitchenStage::PlacedInFridge,
        ] {
            for kitchen_id in &kitchens {
                let spec = KitchenEventSpec {
                    stage,
                    date,
                    fridge_id: None,
                    order_ids: None,
                };
                let seq = self.state.last_seq();
                self.tick(60);
                self.run(
                    "kitchen stage",
                    Command::Schedule(ScheduleCommand::KitchenEvent {
                        kitchen_id: kitchen_id.clone(),
                        spec: spec.clone(),
                        seed: self.state.last_seq(),
                        policy,
                    }),
                )?;
                // A kitchen with nothing that day sends nothing.
                if self.state.last_seq() > seq {
                    self.tally.api_requests += 1.0;
                    self.tally.api_bytes += json_len(&spec);
                }
            }
        }
        Ok(())
    }

    fn pick_up_plan_orders(&mut self, date: chrono::NaiveDate) -> Result<usize, MeasureError> {
        let waiting: Vec<OrderId> = self
            .state
            .orders()
            .iter()
            .filter(|o| o.delivery_date == Some(date) && o.status == OrderStatus::Available)
            .map(|o| o.order_id.clone())
            .collect();
        for order_id in &waiting {
            self.pick_up(order_id)?;
        }
        Ok(waiting.len())
    }
}

fn at_hour(date: chrono::NaiveDate, hour: u32) -> DateTime<Utc> {
    date.and_hms_nano_opt(hour, 0, 0, CLOCK_START_NANOS)
        .map(|t| t.and_utc())
        .unwrap_or_default()
}
