//! Webhook endpoints (issue 14): the registrations, as district data, and
//! what a committed event means for an integrator.
//!
//! - `Webhooks`: the endpoints admins registered (`WebhookCommand`), each
//!   remembering the seq it was registered (and disabled) at, so the node's
//!   outbox can tell, for any log seq, which endpoints want that event —
//!   the same answer live and when it catches up after a restart.
//! - [`payloads`]: the pure mapping from committed events to deliveries'
//!   bodies: `(family, stream, type, JSON)`. The JSON is a public shape of
//!   its own (`docs/webhooks.md`), built field by field from an allow-list,
//!   so secrets (a fridge's key, an endpoint's key), pickup codes, payment
//!   tokens, idempotency keys and ACL cursors never leave the node. Events
//!   with no public meaning (reservations are told as stock, the payment
//!   plumbing, promotions) map to nothing.
//!
//! Deliveries themselves are not district data: they live in the node's
//! own outbox (`region-node` `webhooks`), derived from the log.

use chrono::{DateTime, Utc};
use imbl::OrdMap;
use protocol::schedule::ScheduleEvent;
use protocol::webhooks::{WebhookEvent, WebhookFamily, WebhookSpec};
use protocol::{Event, EventEnvelope, WebhookId};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Context, DistrictState, DomainError, Recorded};

/// Most endpoints enabled at once in a district: each has its own sender
/// and its own copy of every event of its families.
pub const MAX_ENDPOINTS: usize = 32;

/// What admins ask of webhooks.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookCommand {
    /// Register a new endpoint; the id is drawn by the adapter (a ULID).
    Register {
        endpoint_id: WebhookId,
        spec: WebhookSpec,
    },
    /// Stop delivering to an endpoint. Disabling a disabled endpoint
    /// changes nothing (no event).
    Disable { endpoint_id: WebhookId },
}

/// One registered endpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    endpoint_id: WebhookId,
    url: String,
    families: Vec<WebhookFamily>,
    secret: String,
    registered_seq: u64,
    registered_at: DateTime<Utc>,
    disabled: Option<(u64, DateTime<Utc>)>,
}

impl Endpoint {
    pub fn id(&self) -> &WebhookId {
        &self.endpoint_id
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn families(&self) -> &[WebhookFamily] {
        &self.families
    }

    /// The signing key (the node's sender only; never served).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The log seq of its registration: it wants nothing up to it.
    pub fn registered_seq(&self) -> u64 {
        self.registered_seq
    }

    pub fn is_enabled(&self) -> bool {
        self.disabled.is_none()
    }

    /// Whether the event at `seq` of `family` is for this endpoint: after
    /// its registration and before it was disabled.
    pub fn wants(&self, family: WebhookFamily, seq: u64) -> bool {
        seq > self.registered_seq
            && self.disabled.is_none_or(|(at, _)| seq < at)
            && self.families.contains(&family)
    }

    /// What admins see: the secret only as a hint (its last four
    /// characters), so a leaked admin answer does not leak the key.
    pub fn view(&self) -> EndpointView {
        let hint: String = {
            let n = self.secret.chars().count();
            self.secret.chars().skip(n.saturating_sub(4)).collect()
        };
        EndpointView {
            endpoint_id: self.endpoint_id.clone(),
            url: self.url.clone(),
            families: self.families.clone(),
            secret_hint: format!("…{hint}"),
            enabled: self.is_enabled(),
            registered_at: self.registered_at,
            disabled_at: self.disabled.map(|(_, at)| at),
        }
    }
}

/// An endpoint as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointView {
    pub endpoint_id: WebhookId,
    pub url: String,
    pub families: Vec<WebhookFamily>,
    pub secret_hint: String,
    pub enabled: bool,
    pub registered_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// The district's webhook endpoints, enabled or not (a disabled one stays,
/// so its delivery log keeps a name).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Webhooks {
    endpoints: OrdMap<WebhookId, Endpoint>,
}

impl Webhooks {
    pub fn get(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(id)
    }

    /// Every endpoint, oldest id first (ids are ULIDs).
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    fn enabled(&self) -> usize {
        self.endpoints.values().filter(|e| e.is_enabled()).count()
    }
}

pub fn decide(
    state: &DistrictState,
    cmd: WebhookCommand,
    _ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let hooks = &state.webhooks;
    match cmd {
        WebhookCommand::Register { endpoint_id, spec } => {
            let spec = spec
                .validated()
                .map_err(|e| DomainError::Invalid(e.to_string()))?;
            if hooks.get(&endpoint_id).is_some() {
                return Err(DomainError::Invalid(format!(
                    "webhook endpoint {endpoint_id} already exists"
                )));
            }
            if hooks.enabled() >= MAX_ENDPOINTS {
                return Err(DomainError::Invalid(format!(
                    "at most {MAX_ENDPOINTS} webhook endpoints may be enabled; disable one first"
                )));
            }
            Ok(vec![Event::Webhook(WebhookEvent::EndpointRegistered {
                endpoint_id,
                url: spec.url,
                families: spec.families,
                secret: spec.secret,
            })])
        }
        WebhookCommand::Disable { endpoint_id } => match hooks.get(&endpoint_id) {
            None => Err(DomainError::Invalid(format!(
                "webhook endpoint {endpoint_id} does not exist"
            ))),
            Some(e) if !e.is_enabled() => Ok(vec![]),
            Some(_) => Ok(vec![Event::Webhook(WebhookEvent::EndpointDisabled {
                endpoint_id,
            })]),
        },
    }
}

/// The one handler of webhook events. Never changes the catalog.
pub(crate) fn evolve(state: &mut DistrictState, event: &WebhookEvent, rec: Recorded<'_>) -> bool {
    let hooks = &mut state.webhooks;
    match event {
        WebhookEvent::EndpointRegistered {
            endpoint_id,
            url,
            families,
            secret,
        } => {
            hooks.endpoints.insert(
                endpoint_id.clone(),
                Endpoint {
                    endpoint_id: endpoint_id.clone(),
                    url: url.clone(),
                    families: families.clone(),
                    secret: secret.clone(),
                    registered_seq: rec.seq,
                    registered_at: rec.at,
                    disabled: None,
                },
            );
        }
        WebhookEvent::EndpointDisabled { endpoint_id } => {
            if let Some(e) = hooks.endpoints.get_mut(endpoint_id) {
                e.disabled.get_or_insert((rec.seq, rec.at));
            }
        }
    }
    false
}

/// One committed event as integrators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub family: WebhookFamily,
    pub seq: u64,
    /// The log stream (`order-…`, `stock-f-1`): deliveries of one stream
    /// are delivered in seq order.
    pub stream: String,
    /// `order.placed`, `stock.updated`, … (the `Larder-Event` header).
    pub event_type: &'static str,
    /// The delivery body (see `docs/webhooks.md`).
    pub body: Value,
}

/// The deliveries' bodies for committed events, in log order. Pure: the
/// node calls it on every committed batch and when it catches up from the
/// log, and gets the same answer both times.
pub fn payloads(events: &[EventEnvelope]) -> Vec<Payload> {
    events
        .iter()
        .filter_map(|env| {
            let (family, event_type, data) = public(&env.event)?;
            Some(Payload {
                family,
                seq: env.seq,
                stream: env.stream_id.clone(),
                event_type,
                body: json!({
                    "event_id": env.event_id.to_string(),
                    "type": event_type,
                    "family": family,
                    "seq": env.seq,
                    "stream": env.stream_id,
                    "district_id": env.district_id,
                    "occurred_at": env.recorded_at,
                    "data": data,
                }),
            })
        })
        .collect()
}

/// The public meaning of one event: family, type and data, or `None`.
/// An allow-list: every field is named here.
fn public(event: &Event) -> Option<(WebhookFamily, &'static str, Value)> {
    // Exhaustive here, so a new event must be placed in a family or said
    // to be private; each family's own function builds its payloads.
    match event {
        Event::OrderPlaced { .. }
        | Event::OrderCancelled { .. }
        | Event::OrderPurchased { .. }
        | Event::OrderPurchaseRefused { .. }
        | Event::OrderRefunded { .. }
        | Event::OrderPickedUp { .. }
        | Event::OrderUnclaimed { .. }
        | Event::OrderFlagged { .. } => order_payload(event),
        Event::MealStockUpdated { .. }
        | Event::MealStockReserved { .. }
        | Event::MealStockReleased { .. }
        | Event::MealUnitsExpired { .. }
        | Event::StockMovementRecorded { .. }
        | Event::MealUnitPlacedForOrder { .. } => stock_payload(event),
        Event::FridgeRegistered { .. }
        | Event::FridgeStatusChanged { .. }
        | Event::FridgeQuarantined { .. }
        | Event::FridgeQuarantineLifted { .. }
        | Event::TemperatureRecovered { .. }
        | Event::DoorPickupRefused { .. }
        | Event::PickupNothingTaken { .. } => fridge_payload(event),
        Event::Schedule(e) => schedule(e),
        // Catalog definitions, the payment plumbing (told as order.purchased
        // / refused / refunded), telemetry receipts (ACL cursors),
        // promotions, webhook registrations and par levels: nothing public.
        Event::MealDefined { .. }
        | Event::MealDiscontinued { .. }
        | Event::PurchaseRequested { .. }
        | Event::OrderPurchaseConfirmed { .. }
        | Event::RefundRequested { .. }
        | Event::PaymentResultRecorded { .. }
        | Event::FridgeTelemetryReceived { .. }
        | Event::Promotion(_)
        | Event::Webhook(_)
        | Event::Restock(_) => None,
        // A customer's waitlist entries and notifications are theirs, not
        // integration data (the shelf's counts travel as stock events).
        Event::Waitlist(_) | Event::Notification(_) => None,
        // Housekeeping of the node's memory: no order changed.
        Event::OrdersArchived { .. } => None,
    }
}

/// The `orders` family: an order's life as integrators see it.
fn order_payload(event: &Event) -> Option<(WebhookFamily, &'static str, Value)> {
    use WebhookFamily::Orders;
    let found = match event {
        Event::OrderPlaced {
            order_id,
            channel,
            fridge_id,
            lines,
            total,
            currency,
            hold_until,
            ..
        } => {
            let lines: Vec<Value> = lines
                .iter()
                .map(|l| json!({"meal_id": l.meal_id, "name": l.name, "qty": l.qty, "unit_price": l.unit_price}))
                .collect();
            (
                Orders,
                "order.placed",
                json!({"order_id": order_id, "channel": channel, "fridge_id": fridge_id,
                       "lines": lines, "total": total, "currency": currency, "hold_until": hold_until}),
            )
        }
        Event::OrderCancelled { order_id } => {
            (Orders, "order.cancelled", json!({"order_id": order_id}))
        }
        Event::OrderPurchased {
            order_id,
            pickup_deadline,
            ..
        } => (
            Orders,
            "order.purchased",
            json!({"order_id": order_id, "pickup_deadline": pickup_deadline}),
        ),
        Event::OrderPurchaseRefused { order_id, reason } => (
            Orders,
            "order.refused",
            json!({"order_id": order_id, "reason": reason}),
        ),
        Event::OrderRefunded { order_id, .. } => {
            (Orders, "order.refunded", json!({"order_id": order_id}))
        }
        Event::OrderPickedUp { order_id } => {
            (Orders, "order.picked_up", json!({"order_id": order_id}))
        }
        Event::OrderUnclaimed { order_id } => {
            (Orders, "order.unclaimed", json!({"order_id": order_id}))
        }
        Event::OrderFlagged {
            order_id,
            meal_id,
            reason,
        } => (
            Orders,
            "order.flagged",
            json!({"order_id": order_id, "meal_id": meal_id, "reason": reason}),
        ),
        _ => return None,
    };
    Some(found)
}

/// The `stock` family: counts, reservations and movements per fridge and meal.
fn stock_payload(event: &Event) -> Option<(WebhookFamily, &'static str, Value)> {
    use WebhookFamily::Stock;
    let found = match event {
        Event::MealStockUpdated {
            fridge_id,
            meal_id,
            on_hand,
            source,
        } => (
            Stock,
            "stock.counted",
            json!({"fridge_id": fridge_id, "meal_id": meal_id, "on_hand": on_hand, "source": source}),
        ),
        Event::MealStockReserved {
            order_id,
            fridge_id,
            meal_id,
            qty,
        } => (
            Stock,
            "stock.reserved",
            json!({"fridge_id": fridge_id, "meal_id": meal_id, "qty": qty, "order_id": order_id}),
        ),
        Event::MealStockReleased {
            order_id,
            fridge_id,
            meal_id,
            qty,
        } => (
            Stock,
            "stock.released",
            json!({"fridge_id": fridge_id, "meal_id": meal_id, "qty": qty, "order_id": order_id}),
        ),
        Event::MealUnitsExpired {
            fridge_id,
            meal_id,
            units,
        } => (
            Stock,
            "stock.expired",
            json!({"fridge_id": fridge_id, "meal_id": meal_id, "units": units}),
        ),
        Event::StockMovementRecorded {
            fridge_id,
            meal_id,
            units,
            movement,
            ..
        } => (
            Stock,
            "stock.moved",
            json!({"fridge_id": fridge_id, "meal_id": meal_id, "units": units, "movement": movement}),
        ),
        Event::MealUnitPlacedForOrder {
            order_id,
            fridge_id,
            meal_id,
        } => (
            Stock,
            "stock.placed_for_order",
            json!({"fridge_id": fridge_id, "meal_id": meal_id, "order_id": order_id}),
        ),
        _ => return None,
    };
    Some(found)
}

/// The `fridges` family: registrations, status and temperature.
fn fridge_payload(event: &Event) -> Option<(WebhookFamily, &'static str, Value)> {
    use WebhookFamily::Fridges;
    let found = match event {
        Event::FridgeRegistered { fridge, .. } => (
            Fridges,
            "fridge.registered",
            json!({"fridge_id": fridge.fridge_id, "name": fridge.name, "address": fridge.address,
                   "position": fridge.position, "vendor": fridge.vendor, "status": fridge.status}),
        ),
        Event::FridgeStatusChanged {
            fridge_id,
            status,
            reason,
        } => (
            Fridges,
            "fridge.status_changed",
            json!({"fridge_id": fridge_id, "status": status, "reason": reason}),
        ),
        Event::FridgeQuarantined {
            fridge_id,
            since,
            max_milli_c,
            limit_milli_c,
            ..
        } => (
            Fridges,
            "fridge.quarantined",
            json!({"fridge_id": fridge_id, "since": since, "max_milli_c": max_milli_c, "limit_milli_c": limit_milli_c}),
        ),
        Event::FridgeQuarantineLifted { fridge_id } => (
            Fridges,
            "fridge.quarantine_lifted",
            json!({"fridge_id": fridge_id}),
        ),
        Event::TemperatureRecovered {
            fridge_id,
            since,
            until,
            max_milli_c,
        } => (
            Fridges,
            "fridge.temperature_recovered",
            json!({"fridge_id": fridge_id, "since": since, "until": until, "max_milli_c": max_milli_c}),
        ),
        Event::DoorPickupRefused {
            fridge_id,
            order_id,
            reason,
        } => (
            Fridges,
            "fridge.door_pickup_refused",
            json!({"fridge_id": fridge_id, "order_id": order_id, "reason": reason}),
        ),
        Event::PickupNothingTaken {
            fridge_id,
            order_id,
            at,
        } => (
            Fridges,
            "fridge.pickup_nothing_taken",
            json!({"fridge_id": fridge_id, "order_id": order_id, "at": at}),
        ),
        _ => return None,
    };
    Some(found)
}

/// The schedule's events by family; each variant is placed here, so a new
/// one must be given a family (or none) before the crate compiles.
fn schedule(event: &ScheduleEvent) -> Option<(WebhookFamily, &'static str, Value)> {
    use ScheduleEvent as E;
    match event {
        E::PlanCreated { .. }
        | E::PlanChanged { .. }
        | E::PlanCancelled { .. }
        | E::ChargeSettled { .. }
        | E::OrderScheduled { .. }
        | E::OrderWithdrawn { .. } => plans(event),
        E::CalendarDaySet { .. }
        | E::OrderPrepared { .. }
        | E::OrderDispatched { .. }
        | E::OrderAvailableForPicking { .. }
        | E::PreorderScheduled { .. } => kitchens(event),
        E::PreorderPlaced { .. } | E::PreorderWithdrawn { .. } => orders_ahead(event),
        // Charges requested and credits: the money plumbing, told by
        // plan.charge_settled; payment methods are tokens.
        E::ChargeRequested { .. }
        | E::DayCredited { .. }
        | E::PaymentMethodChanged { .. }
        | E::CreditRefundRequested { .. }
        | E::CreditRefundSettled { .. } => None,
    }
}

/// Plans and their charges and orders (`schedule` picks the variants).
fn plans(event: &ScheduleEvent) -> Option<(WebhookFamily, &'static str, Value)> {
    use WebhookFamily::Plans;
    let found = match event {
        ScheduleEvent::PlanCreated {
            plan_id,
            start_date,
            end_date,
            ..
        } => (
            Plans,
            "plan.created",
            json!({"plan_id": plan_id, "start_date": start_date, "end_date": end_date}),
        ),
        ScheduleEvent::PlanChanged {
            plan_id,
            from,
            end_date,
            ..
        } => (
            Plans,
            "plan.changed",
            json!({"plan_id": plan_id, "from": from, "end_date": end_date}),
        ),
        ScheduleEvent::PlanCancelled { plan_id, from } => (
            Plans,
            "plan.cancelled",
            json!({"plan_id": plan_id, "from": from}),
        ),
        ScheduleEvent::ChargeSettled {
            charge_id,
            plan_id,
            approved,
            ..
        } => (
            Plans,
            "plan.charge_settled",
            json!({"plan_id": plan_id, "charge_id": charge_id, "approved": approved}),
        ),
        ScheduleEvent::OrderScheduled {
            order_id,
            plan_id,
            date,
            fridge_id,
            kitchen_id,
            meal_id,
            ..
        } => (
            Plans,
            "plan.order_scheduled",
            json!({"plan_id": plan_id, "order_id": order_id, "date": date, "fridge_id": fridge_id,
                   "kitchen_id": kitchen_id, "meal_id": meal_id}),
        ),
        ScheduleEvent::OrderWithdrawn {
            order_id,
            plan_id,
            reason,
            ..
        } => (
            Plans,
            "plan.order_withdrawn",
            json!({"plan_id": plan_id, "order_id": order_id, "reason": reason}),
        ),
        _ => return None,
    };
    Some(found)
}

/// What kitchens make and when (`schedule` picks the variants).
fn kitchens(event: &ScheduleEvent) -> Option<(WebhookFamily, &'static str, Value)> {
    use WebhookFamily::Kitchens;
    let found = match event {
        ScheduleEvent::CalendarDaySet {
            date,
            kitchen_id,
            working,
            note,
        } => (
            Kitchens,
            "kitchen.calendar_day_set",
            json!({"date": date, "kitchen_id": kitchen_id, "working": working, "note": note}),
        ),
        ScheduleEvent::OrderPrepared { order_id } => (
            Kitchens,
            "kitchen.order_prepared",
            json!({"order_id": order_id}),
        ),
        ScheduleEvent::OrderDispatched { order_id } => (
            Kitchens,
            "kitchen.order_dispatched",
            json!({"order_id": order_id}),
        ),
        ScheduleEvent::OrderAvailableForPicking {
            order_id,
            pickup_deadline,
            ..
        } => (
            Kitchens,
            "kitchen.order_available",
            json!({"order_id": order_id, "pickup_deadline": pickup_deadline}),
        ),
        // Paid: from now on the kitchen makes it (like a plan day's order).
        ScheduleEvent::PreorderScheduled {
            order_id,
            date,
            fridge_id,
            kitchen_id,
            meal_id,
            ..
        } => (
            Kitchens,
            "kitchen.order_ahead_scheduled",
            json!({"order_id": order_id, "date": date, "fridge_id": fridge_id,
                   "kitchen_id": kitchen_id, "meal_id": meal_id}),
        ),
        _ => return None,
    };
    Some(found)
}

/// An order ahead placed or withdrawn (`schedule` picks the variants).
fn orders_ahead(event: &ScheduleEvent) -> Option<(WebhookFamily, &'static str, Value)> {
    let found = match event {
        ScheduleEvent::PreorderPlaced {
            order_id,
            date,
            kitchen_id,
            cancel_until,
        } => (
            WebhookFamily::Orders,
            "order.ahead_placed",
            json!({"order_id": order_id, "date": date, "kitchen_id": kitchen_id,
                   "cancel_until": cancel_until}),
        ),
        ScheduleEvent::PreorderWithdrawn {
            order_id, reason, ..
        } => (
            WebhookFamily::Orders,
            "order.ahead_withdrawn",
            json!({"order_id": order_id, "reason": reason}),
        ),
        _ => return None,
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given;
    use protocol::catalog::{Fridge, FridgeStatus};
    use protocol::geo::GeoPoint;
    use protocol::{DistrictId, FridgeId, OrderId};

    fn env(seq: u64, event: Event) -> EventEnvelope {
        given::envelope(seq, event.stream_id(), 1, event, given::t0())
    }

    fn ctx() -> Context {
        Context {
            district_id: DistrictId::from_static("d"),
            area: protocol::geo::DistrictArea::new(vec!["dpsby".into()]).unwrap(),
            now: given::t0(),
            policy: Default::default(),
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        }
    }

    fn spec(families: Vec<WebhookFamily>) -> WebhookSpec {
        WebhookSpec {
            url: "https://erp.example.com/hook".into(),
            families,
            secret: "whsec-0123456789abcdef".into(),
        }
    }

    #[test]
    fn secrets_and_codes_never_reach_a_payload() {
        let fridge = Fridge {
            fridge_id: FridgeId::from_static("f-1"),
            name: "Lobby".into(),
            address: "1 Main St".into(),
            position: GeoPoint {
                lat: 42.3,
                lon: -83.0,
            },
            geohash: "dpsb".into(),
            vendor: "frostline".into(),
            status: FridgeStatus::Online,
        };
        let events = vec![
            env(
                1,
                Event::FridgeRegistered {
                    fridge,
                    secret: Some("fridge-secret-xyz".into()),
                },
            ),
            env(
                2,
                Event::OrderPurchased {
                    order_id: OrderId::from_static("o-1"),
                    pickup_code: "918273".into(),
                    pickup_deadline: given::t0(),
                },
            ),
            env(
                3,
                Event::FridgeTelemetryReceived {
                    fridge_id: FridgeId::from_static("f-1"),
                    cursor_json: "{\"cursor\":1}".into(),
                    outcome_json: "{}".into(),
                    forget_previous_secret: false,
                },
            ),
            env(
                4,
                Event::Webhook(WebhookEvent::EndpointRegistered {
                    endpoint_id: WebhookId::from_static("w-1"),
                    url: "https://x.example".into(),
                    families: vec![WebhookFamily::Orders],
                    secret: "hook-secret-abc".into(),
                }),
            ),
        ];
        let out = payloads(&events);
        assert_eq!(out.len(), 2, "telemetry and webhook events are not public");
        assert_eq!(out[0].event_type, "fridge.registered");
        assert_eq!(out[0].family, WebhookFamily::Fridges);
        assert_eq!(out[0].stream, "fridge-f-1");
        assert_eq!(out[1].event_type, "order.purchased");
        assert_eq!(out[1].body["data"]["order_id"], "o-1");
        assert_eq!(out[1].body["seq"], 2);
        let text = serde_json::to_string(&out.iter().map(|p| &p.body).collect::<Vec<_>>()).unwrap();
        for secret in ["fridge-secret-xyz", "918273", "cursor", "hook-secret-abc"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn an_endpoint_wants_its_families_between_registration_and_disabling() {
        let ctx = ctx();
        let mut state = DistrictState::default();
        let id = WebhookId::from_static("w-1");
        let register = WebhookCommand::Register {
            endpoint_id: id.clone(),
            spec: spec(vec![WebhookFamily::Stock, WebhookFamily::Orders]),
        };
        let events = decide(&state, register.clone(), &ctx).unwrap();
        given::apply(&mut state, events, given::t0());
        assert!(decide(&state, register, &ctx).is_err(), "ids are unique");
        let e = state.webhooks().get("w-1").unwrap();
        assert!(
            !e.wants(WebhookFamily::Orders, 1),
            "not its own registration"
        );
        assert!(e.wants(WebhookFamily::Orders, 2));
        assert!(!e.wants(WebhookFamily::Plans, 2));
        assert_eq!(e.view().secret_hint, "…cdef");
        assert_eq!(
            e.view().families,
            vec![WebhookFamily::Orders, WebhookFamily::Stock]
        );

        let disable = WebhookCommand::Disable { endpoint_id: id };
        let events = decide(&state, disable.clone(), &ctx).unwrap();
        given::apply(&mut state, events, given::t0());
        let e = state.webhooks().get("w-1").unwrap();
        assert!(!e.wants(WebhookFamily::Orders, 2), "from the disabling on");
        assert!(!e.wants(WebhookFamily::Orders, 3));
        assert_eq!(decide(&state, disable, &ctx), Ok(vec![]), "idempotent");
    }

    #[test]
    fn bad_specs_and_unknown_endpoints_are_refused_without_events() {
        let ctx = ctx();
        let state = DistrictState::default();
        let mut bad = spec(vec![WebhookFamily::Orders]);
        bad.secret = "short".into();
        let r = decide(
            &state,
            WebhookCommand::Register {
                endpoint_id: WebhookId::from_static("w-1"),
                spec: bad,
            },
            &ctx,
        );
        assert!(matches!(r, Err(DomainError::Invalid(m)) if m.contains("secret")));
        let r = decide(
            &state,
            WebhookCommand::Disable {
                endpoint_id: WebhookId::from_static("nope"),
            },
            &ctx,
        );
        assert!(r.is_err());
    }
}
