//! The customer's notification stream: what happened to their orders and
//! plans, kept for a day so a phone that was away can catch up.
//!
//! [`follow`] reads each event after its own handler ran (like
//! `loyalty::follow`) and derives, per customer, the notifications it
//! means: an order placed, paid (with its pickup code), refused, refunded,
//! cancelled, unclaimed, a plan order available in its fridge, a pickup
//! reminder, a plan charge paid or declined, a fridge quarantined while
//! the customer has an open order in it. Only app orders notify (a POS
//! till's `customer` is nobody's phone).
//!
//! **Ids.** A notification's id is `push::version_at(seq, NOTIFICATION_SLOT_BASE + n)`
//! (`seq` the event's, `n` its index among that event's notifications):
//! increasing over the district, in the same space as the WebSocket
//! `version`s and never equal to one (push messages take the slots below
//! [`NOTIFICATION_SLOT_BASE`]), so one `since` resumes both.
//!
//! **Retention.** Notifications older than [`RETENTION_SECS`] before the
//! newest recorded one are dropped, and a customer keeps at most
//! [`MAX_PER_CUSTOMER`] (the oldest go first); readers also filter by the
//! reader's `now`, so nothing older than a day is ever served.
//!
//! **Pickup reminders** are clock-driven: the part keeps the orders that
//! wait in a fridge and were not reminded yet, by deadline; the node's
//! timer asks [`reminders_due`] and submits `RemindPickups`, whose events
//! (`PickupReminded`, one per order) take the order out, so a reminder is
//! recorded once even across restarts.
//!
//! **Quiet hours** per customer (`QuietHoursSet`) are kept here for the
//! node's push adapter, which holds phone pushes during them.

use chrono::{DateTime, Duration, Utc};
use imbl::{HashMap, OrdMap, OrdSet};
use protocol::notifications::{NotificationEvent, QuietHours};
use protocol::orders::{Channel, OrderId, RefusalReason};
use protocol::schedule::ScheduleEvent;
use protocol::{ChargeId, Event, FridgeId, PlanId};
use serde::{Deserialize, Serialize};

use crate::push::version_at;
use crate::{Context, DistrictState, DomainError, Recorded};

/// How long a notification is kept for reconnects, in seconds (24 h).
pub const RETENTION_SECS: i64 = 24 * 3600;
/// Most notifications kept per customer.
pub const MAX_PER_CUSTOMER: usize = 100;
/// First version slot of notification ids (see the module docs).
pub const NOTIFICATION_SLOT_BASE: usize = 1 << 15;
/// Most notifications one event may make (a quarantine of a very full
/// fridge: the rest are not told).
pub const MAX_PER_EVENT: usize = crate::push::MAX_MESSAGES_PER_BATCH - NOTIFICATION_SLOT_BASE;

/// What a notification says. Stored in snapshots (postcard: externally
/// tagged); served as JSON by [`Notification::to_json`] with a `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Confirmed; free to cancel until `hold_until`, then charged.
    OrderPlaced {
        order_id: OrderId,
        fridge_id: FridgeId,
        hold_until: DateTime<Utc>,
    },
    /// Paid: pick it up with the code before the deadline.
    OrderPaid {
        order_id: OrderId,
        fridge_id: FridgeId,
        pickup_code: String,
        pickup_deadline: DateTime<Utc>,
    },
    OrderRefused {
        order_id: OrderId,
        reason: RefusalReason,
    },
    OrderRefunded {
        order_id: OrderId,
        amount: i64,
    },
    OrderCancelled {
        order_id: OrderId,
    },
    /// Not picked up by its deadline.
    OrderUnclaimed {
        order_id: OrderId,
        fridge_id: FridgeId,
    },
    /// A plan order was placed in its fridge by the kitchen.
    OrderAvailable {
        order_id: OrderId,
        fridge_id: FridgeId,
        pickup_code: String,
        pickup_deadline: DateTime<Utc>,
    },
    /// The pickup deadline is near (the node's reminder lead).
    PickupReminder {
        order_id: OrderId,
        fridge_id: FridgeId,
        pickup_code: String,
        pickup_deadline: DateTime<Utc>,
    },
    PlanChargePaid {
        plan_id: PlanId,
        charge_id: ChargeId,
        amount: i64,
    },
    /// Declined: retried with backoff, or at once after a new payment method.
    PlanChargeDeclined {
        plan_id: PlanId,
        charge_id: ChargeId,
        amount: i64,
    },
    /// The fridge holding the customer's open order is too warm: its meals
    /// are withheld until an operator clears it.
    FridgeQuarantined {
        fridge_id: FridgeId,
        order_id: OrderId,
    },
    /// An order ahead was paid: the kitchen makes it for `date` (the code
    /// comes with `order_available` once it is in the fridge).
    OrderAheadConfirmed {
        order_id: OrderId,
        fridge_id: FridgeId,
        date: chrono::NaiveDate,
    },
    /// A meal the customer waits for is back: one unit is held for them at
    /// `fridge_id` until `until` (order it there to take it).
    WaitlistHold {
        entry_id: protocol::WaitlistId,
        meal_id: protocol::MealId,
        fridge_id: FridgeId,
        until: DateTime<Utc>,
    },
    // Append new kinds here (snapshots: bump STATE_SNAPSHOT_VERSION).
}

impl NotificationKind {
    /// The `kind` of the JSON shape.
    pub fn name(&self) -> &'static str {
        match self {
            NotificationKind::OrderPlaced { .. } => "order_placed",
            NotificationKind::OrderPaid { .. } => "order_paid",
            NotificationKind::OrderRefused { .. } => "order_refused",
            NotificationKind::OrderRefunded { .. } => "order_refunded",
            NotificationKind::OrderCancelled { .. } => "order_cancelled",
            NotificationKind::OrderUnclaimed { .. } => "order_unclaimed",
            NotificationKind::OrderAvailable { .. } => "order_available",
            NotificationKind::PickupReminder { .. } => "pickup_reminder",
            NotificationKind::PlanChargePaid { .. } => "plan_charge_paid",
            NotificationKind::PlanChargeDeclined { .. } => "plan_charge_declined",
            NotificationKind::FridgeQuarantined { .. } => "fridge_quarantined",
            NotificationKind::OrderAheadConfirmed { .. } => "order_ahead_confirmed",
            NotificationKind::WaitlistHold { .. } => "waitlist_hold",
        }
    }
}

/// One notification to one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Increasing over the district; usable as `since`.
    pub id: u64,
    pub customer: String,
    /// When the event behind it was recorded.
    pub at: DateTime<Utc>,
    pub kind: NotificationKind,
}

impl Notification {
    /// The API's shape: `{id, at, kind, ...the kind's fields}` (the
    /// customer is the caller, so not repeated).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        out.insert("id".into(), self.id.into());
        out.insert(
            "at".into(),
            serde_json::to_value(self.at).unwrap_or_default(),
        );
        out.insert("kind".into(), self.kind.name().into());
        // Externally tagged: `{"order_paid": {fields}}`.
        if let Ok(serde_json::Value::Object(tagged)) = serde_json::to_value(&self.kind) {
            for (_, fields) in tagged {
                if let serde_json::Value::Object(fields) = fields {
                    out.extend(fields);
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notifications {
    /// Every kept notification, by id (so by time).
    by_id: OrdMap<u64, Notification>,
    /// Each customer's kept ids.
    by_customer: HashMap<String, OrdSet<u64>>,
    /// Orders waiting in a fridge not reminded yet: (deadline, order).
    reminders: OrdSet<(DateTime<Utc>, OrderId)>,
    quiet: HashMap<String, QuietHours>,
}

impl Notifications {
    /// `customer`'s notifications after `since` (an id or push version)
    /// and no older than a day before `now`, oldest first.
    pub fn of_customer_after<'a>(
        &'a self,
        customer: &str,
        since: u64,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a Notification> + 'a {
        let cutoff = now - Duration::seconds(RETENTION_SECS);
        self.by_customer
            .get(customer)
            .into_iter()
            .flat_map(move |ids| ids.range(since.saturating_add(1)..))
            .filter_map(|id| self.by_id.get(id))
            .filter(move |n| n.at > cutoff)
    }

    /// Every kept notification with an id above `id`, oldest first (what a
    /// batch added, for the push hub).
    pub fn after(&self, id: u64) -> impl Iterator<Item = &Notification> {
        self.by_id.range(id.saturating_add(1)..).map(|(_, n)| n)
    }

    /// The kept notification with this id.
    pub fn get(&self, id: u64) -> Option<&Notification> {
        self.by_id.get(&id)
    }

    pub fn quiet_hours(&self, customer: &str) -> Option<QuietHours> {
        self.quiet.get(customer).copied()
    }

    /// How many are kept (all customers).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Orders to remind at `now`: waiting in a fridge, deadline within `lead`
/// and not passed, not reminded yet.
pub fn reminders_due(
    state: &DistrictState,
    now: DateTime<Utc>,
    lead: Duration,
) -> impl Iterator<Item = &OrderId> {
    state
        .notifications
        .reminders
        .iter()
        .take_while(move |(deadline, _)| *deadline <= now + lead)
        .filter(move |(deadline, _)| *deadline > now)
        .map(|(_, id)| id)
}

/// Commands of the notification part.
#[derive(Debug, Clone, PartialEq)]
pub enum NotificationCommand {
    /// Record a reminder for every order [`reminders_due`] names.
    RemindPickups { lead: Duration },
    /// Set (or with `None` clear) a customer's quiet hours.
    SetQuietHours {
        customer: String,
        quiet_hours: Option<QuietHours>,
    },
}

pub fn decide(
    state: &DistrictState,
    cmd: NotificationCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    match cmd {
        NotificationCommand::RemindPickups { lead } => Ok(reminders_due(state, ctx.now, lead)
            .filter_map(|id| state.orders.get(id))
            .filter_map(|o| {
                Some(Event::Notification(NotificationEvent::PickupReminded {
                    order_id: o.order_id.clone(),
                    customer: o.customer.clone(),
                    pickup_deadline: o.pickup_deadline?,
                }))
            })
            .collect()),
        NotificationCommand::SetQuietHours {
            customer,
            quiet_hours,
        } => {
            if customer.is_empty() {
                return Err(DomainError::Invalid("a customer is needed".into()));
            }
            if state.notifications.quiet.get(&customer) == quiet_hours.as_ref() {
                return Ok(vec![]); // Nothing changes; nothing recorded.
            }
            Ok(vec![Event::Notification(
                NotificationEvent::QuietHoursSet {
                    customer,
                    quiet_hours,
                },
            )])
        }
    }
}

/// The handler of the part's own events.
pub(crate) fn evolve(state: &mut DistrictState, event: &NotificationEvent) -> bool {
    match event {
        NotificationEvent::PickupReminded {
            order_id,
            pickup_deadline,
            ..
        } => {
            state
                .notifications
                .reminders
                .remove(&(*pickup_deadline, order_id.clone()));
        }
        NotificationEvent::QuietHoursSet {
            customer,
            quiet_hours,
        } => match quiet_hours {
            Some(q) => {
                state.notifications.quiet.insert(customer.clone(), *q);
            }
            None => {
                state.notifications.quiet.remove(customer);
            }
        },
    }
    false
}

/// Derives the notifications an event means (see the module docs). Runs
/// after the event's own handler, so orders are already in their new state.
pub(crate) fn follow(state: &mut DistrictState, event: &Event, rec: Recorded) {
    let told = told(state, event);
    track_reminders(state, event);
    if told.is_empty() {
        return;
    }
    let part = &mut state.notifications;
    prune(part, rec.at);
    for (n, (customer, kind)) in told.into_iter().take(MAX_PER_EVENT).enumerate() {
        let id = version_at(rec.seq, NOTIFICATION_SLOT_BASE + n);
        let ids = part.by_customer.entry(customer.clone()).or_default();
        ids.insert(id);
        while ids.len() > MAX_PER_CUSTOMER {
            if let Some(oldest) = ids.remove_min() {
                part.by_id.remove(&oldest);
            }
        }
        let at = rec.at;
        part.by_id.insert(
            id,
            Notification {
                id,
                customer,
                at,
                kind,
            },
        );
    }
}

/// Drops what is older than a day before `now`, oldest first.
fn prune(part: &mut Notifications, now: DateTime<Utc>) {
    let cutoff = now - Duration::seconds(RETENTION_SECS);
    while let Some((id, n)) = part.by_id.get_min().map(|(id, n)| (*id, n.clone())) {
        if n.at > cutoff {
            break;
        }
        part.by_id.remove(&id);
        if let Some(ids) = part.by_customer.get_mut(&n.customer) {
            ids.remove(&id);
            if ids.is_empty() {
                part.by_customer.remove(&n.customer);
            }
        }
    }
}

/// Who is told what about `event`.
fn told(state: &DistrictState, event: &Event) -> Vec<(String, NotificationKind)> {
    match event {
        Event::OrderPlaced { order_id, .. }
        | Event::OrderPurchased { order_id, .. }
        | Event::OrderPurchaseRefused { order_id, .. }
        | Event::OrderRefunded { order_id, .. }
        | Event::OrderCancelled { order_id }
        | Event::OrderUnclaimed { order_id }
        | Event::Schedule(ScheduleEvent::OrderAvailableForPicking { order_id, .. })
        | Event::Schedule(ScheduleEvent::PreorderScheduled { order_id, .. })
        | Event::Notification(NotificationEvent::PickupReminded { order_id, .. }) => {
            order_told(state, event, order_id).into_iter().collect()
        }
        Event::Waitlist(protocol::waitlist::WaitlistEvent::HoldOffered {
            entry_id,
            fridge_id,
            meal_id,
            until,
        }) => state
            .waitlist
            .entry(entry_id)
            .map(|e| {
                let kind = NotificationKind::WaitlistHold {
                    entry_id: entry_id.clone(),
                    meal_id: meal_id.clone(),
                    fridge_id: fridge_id.clone(),
                    until: *until,
                };
                (e.customer.clone(), kind)
            })
            .into_iter()
            .collect(),
        Event::Schedule(ScheduleEvent::ChargeSettled {
            charge_id,
            plan_id,
            approved,
            ..
        }) => charge_told(state, charge_id, plan_id, *approved)
            .into_iter()
            .collect(),
        Event::FridgeQuarantined { fridge_id, .. } => state
            .orders
            .open_at(fridge_id)
            .filter(|o| o.channel == Channel::App)
            .map(|o| {
                let kind = NotificationKind::FridgeQuarantined {
                    fridge_id: fridge_id.clone(),
                    order_id: o.order_id.clone(),
                };
                (o.customer.clone(), kind)
            })
            .collect(),
        _ => vec![],
    }
}

/// What an app order's customer is told about `event` on it (POS orders
/// have no app to tell).
fn order_told(
    state: &DistrictState,
    event: &Event,
    order_id: &OrderId,
) -> Option<(String, NotificationKind)> {
    use NotificationKind as K;
    let o = state
        .orders
        .get(order_id)
        .filter(|o| o.channel == Channel::App)?;
    let id = o.order_id.clone();
    let kind = match event {
        Event::OrderPlaced { hold_until, .. } => K::OrderPlaced {
            order_id: id,
            fridge_id: o.fridge_id.clone(),
            hold_until: *hold_until,
        },
        Event::OrderPurchased {
            pickup_code,
            pickup_deadline,
            ..
        } => K::OrderPaid {
            order_id: id,
            fridge_id: o.fridge_id.clone(),
            pickup_code: pickup_code.clone(),
            pickup_deadline: *pickup_deadline,
        },
        Event::OrderPurchaseRefused { reason, .. } => K::OrderRefused {
            order_id: id,
            reason: *reason,
        },
        Event::OrderRefunded { .. } => K::OrderRefunded {
            order_id: id,
            amount: o.charged().amount_minor,
        },
        Event::OrderCancelled { .. } => K::OrderCancelled { order_id: id },
        Event::OrderUnclaimed { .. } => K::OrderUnclaimed {
            order_id: id,
            fridge_id: o.fridge_id.clone(),
        },
        Event::Schedule(ScheduleEvent::OrderAvailableForPicking {
            pickup_code,
            pickup_deadline,
            ..
        }) => K::OrderAvailable {
            order_id: id,
            fridge_id: o.fridge_id.clone(),
            pickup_code: pickup_code.clone(),
            pickup_deadline: *pickup_deadline,
        },
        Event::Schedule(ScheduleEvent::PreorderScheduled { date, .. }) => K::OrderAheadConfirmed {
            order_id: id,
            fridge_id: o.fridge_id.clone(),
            date: *date,
        },
        Event::Notification(NotificationEvent::PickupReminded {
            pickup_deadline, ..
        }) => K::PickupReminder {
            order_id: id,
            fridge_id: o.fridge_id.clone(),
            pickup_code: o.pickup_code.clone().unwrap_or_default(),
            pickup_deadline: *pickup_deadline,
        },
        _ => return None,
    };
    Some((o.customer.clone(), kind))
}

/// What a plan's customer is told when its charge settled.
fn charge_told(
    state: &DistrictState,
    charge_id: &protocol::ChargeId,
    plan_id: &protocol::PlanId,
    approved: bool,
) -> Option<(String, NotificationKind)> {
    let charge = state.schedule.charges.get(charge_id.as_str())?;
    let (plan_id, charge_id, amount) = (plan_id.clone(), charge_id.clone(), charge.amount);
    let kind = if approved {
        NotificationKind::PlanChargePaid {
            plan_id,
            charge_id,
            amount,
        }
    } else {
        NotificationKind::PlanChargeDeclined {
            plan_id,
            charge_id,
            amount,
        }
    };
    Some((charge.customer.clone(), kind))
}

/// Keeps [`Notifications::reminders`]: an app order waiting in its fridge
/// is in until reminded or no longer waiting.
fn track_reminders(state: &mut DistrictState, event: &Event) {
    let order_id = match event {
        Event::OrderPurchased { order_id, .. }
        | Event::Schedule(ScheduleEvent::OrderAvailableForPicking { order_id, .. })
        | Event::OrderPickedUp { order_id }
        | Event::OrderUnclaimed { order_id }
        | Event::OrderCancelled { order_id }
        | Event::OrderRefunded { order_id, .. } => order_id,
        _ => return,
    };
    let Some(order) = state.orders.get(order_id) else {
        return;
    };
    let Some(deadline) = order.pickup_deadline else {
        return;
    };
    let key = (deadline, order_id.clone());
    let waiting = order.status.awaits_pickup() && order.channel == Channel::App;
    let reminders = &mut state.notifications.reminders;
    match event {
        Event::OrderPurchased { .. } | Event::Schedule(_) if waiting => {
            reminders.insert(key);
        }
        _ if !waiting => {
            reminders.remove(&key);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given::{apply, bowl_placed, state, t0};
    use protocol::money::Currency;
    use protocol::MealId;

    fn usd() -> Currency {
        Currency::try_from("USD".to_string()).unwrap_or_else(|_| unreachable!())
    }

    fn o(id: &'static str) -> OrderId {
        OrderId::from_static(id)
    }

    fn purchased(order: &'static str) -> Event {
        Event::OrderPurchased {
            order_id: o(order),
            pickup_code: "123456".into(),
            pickup_deadline: t0() + Duration::hours(4),
        }
    }

    fn kinds(s: &DistrictState, customer: &str) -> Vec<&'static str> {
        s.notifications()
            .of_customer_after(customer, 0, t0())
            .map(|n| n.kind.name())
            .collect()
    }

    fn ctx(now: DateTime<Utc>) -> Context {
        Context {
            district_id: protocol::DistrictId::from_static("d"),
            area: protocol::geo::DistrictArea::new(vec!["dpsb".into()])
                .unwrap_or_else(|_| unreachable!()),
            now,
            policy: Default::default(),
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        }
    }

    #[test]
    fn an_app_order_tells_its_customer_each_step_with_increasing_ids() {
        let s = state(vec![
            bowl_placed("o1", "ann", Channel::App),
            purchased("o1"),
        ]);
        let all: Vec<_> = s
            .notifications()
            .of_customer_after("ann", 0, t0())
            .collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind.name(), "order_placed");
        assert_eq!(
            all[1].kind,
            NotificationKind::OrderPaid {
                order_id: o("o1"),
                fridge_id: FridgeId::from_static("f1"),
                pickup_code: "123456".into(),
                pickup_deadline: t0() + Duration::hours(4),
            }
        );
        assert!(all[0].id < all[1].id);
        assert_eq!(all[0].id, version_at(1, NOTIFICATION_SLOT_BASE));
        // `since` the first: only the second.
        let after: Vec<_> = s
            .notifications()
            .of_customer_after("ann", all[0].id, t0())
            .collect();
        assert_eq!(after, vec![all[1]]);
        assert!(kinds(&s, "bob").is_empty());
    }

    #[test]
    fn a_till_order_tells_nobody() {
        let s = state(vec![
            bowl_placed("o1", "till-1", Channel::Pos),
            purchased("o1"),
        ]);
        assert!(s.notifications().is_empty());
    }

    #[test]
    fn refusals_cancels_refunds_and_unclaimed_orders_are_told() {
        let s = state(vec![
            bowl_placed("o1", "ann", Channel::App),
            Event::OrderPurchaseRefused {
                order_id: o("o1"),
                reason: RefusalReason::Declined,
            },
            bowl_placed("o2", "ann", Channel::App),
            Event::OrderCancelled { order_id: o("o2") },
            bowl_placed("o3", "ann", Channel::App),
            purchased("o3"),
            Event::OrderRefunded {
                order_id: o("o3"),
                reference: "r".into(),
            },
            bowl_placed("o4", "ann", Channel::App),
            purchased("o4"),
            Event::OrderUnclaimed { order_id: o("o4") },
        ]);
        assert_eq!(
            kinds(&s, "ann"),
            [
                "order_placed",
                "order_refused",
                "order_placed",
                "order_cancelled",
                "order_placed",
                "order_paid",
                "order_refunded",
                "order_placed",
                "order_paid",
                "order_unclaimed"
            ]
        );
    }

    #[test]
    fn a_pickup_reminder_is_due_within_the_lead_and_recorded_once() {
        let mut s = state(vec![
            bowl_placed("o1", "ann", Channel::App),
            purchased("o1"),
        ]);
        let lead = Duration::minutes(30);
        let early = t0() + Duration::hours(3);
        assert_eq!(reminders_due(&s, early, lead).count(), 0);
        let cmd = NotificationCommand::RemindPickups { lead };
        let none = decide(&s, cmd.clone(), &ctx(early)).unwrap_or_default();
        assert!(none.is_empty());

        let near = t0() + Duration::minutes(3 * 60 + 40);
        assert_eq!(
            reminders_due(&s, near, lead).collect::<Vec<_>>(),
            [&o("o1")]
        );
        let events = decide(&s, cmd.clone(), &ctx(near)).unwrap_or_default();
        assert_eq!(events.len(), 1);
        apply(&mut s, events, near);
        assert_eq!(reminders_due(&s, near, lead).count(), 0);
        assert!(decide(&s, cmd, &ctx(near)).unwrap_or_default().is_empty());
        let last = s
            .notifications()
            .of_customer_after("ann", 0, near)
            .last()
            .cloned();
        assert!(matches!(
            last.map(|n| n.kind),
            Some(NotificationKind::PickupReminder { pickup_code, .. }) if pickup_code == "123456"
        ));
    }

    #[test]
    fn a_picked_up_order_is_not_reminded_and_a_passed_deadline_neither() {
        let mut s = state(vec![
            bowl_placed("o1", "ann", Channel::App),
            purchased("o1"),
            bowl_placed("o2", "ann", Channel::App),
            purchased("o2"),
        ]);
        apply(
            &mut s,
            vec![Event::OrderPickedUp { order_id: o("o1") }],
            t0(),
        );
        let lead = Duration::minutes(30);
        let near = t0() + Duration::minutes(3 * 60 + 40);
        assert_eq!(
            reminders_due(&s, near, lead).collect::<Vec<_>>(),
            [&o("o2")]
        );
        let late = t0() + Duration::hours(5);
        assert_eq!(reminders_due(&s, late, lead).count(), 0);
    }

    #[test]
    fn a_quarantine_tells_the_customers_with_open_orders_in_that_fridge() {
        let s = state(vec![
            bowl_placed("o1", "ann", Channel::App),
            Event::MealStockReserved {
                order_id: o("o1"),
                fridge_id: FridgeId::from_static("f1"),
                meal_id: MealId::from_static("m1"),
                qty: 1,
            },
            bowl_placed("o2", "till", Channel::Pos),
            Event::FridgeQuarantined {
                fridge_id: FridgeId::from_static("f1"),
                since: t0(),
                max_milli_c: 9_000,
                limit_milli_c: 5_000,
                kitchens: vec![],
            },
        ]);
        assert_eq!(kinds(&s, "ann"), ["order_placed", "fridge_quarantined"]);
        assert!(kinds(&s, "till").is_empty());
    }

    #[test]
    fn notifications_older_than_a_day_are_dropped_and_never_served() {
        let mut s = state(vec![bowl_placed("o1", "ann", Channel::App)]);
        let later = t0() + Duration::hours(25);
        // Not served to a reader a day later, even before anything prunes.
        assert_eq!(
            s.notifications().of_customer_after("ann", 0, later).count(),
            0
        );
        apply(&mut s, vec![bowl_placed("o2", "bob", Channel::App)], later);
        assert_eq!(s.notifications().len(), 1);
        assert!(kinds(&s, "ann").is_empty());
    }

    #[test]
    fn a_customer_keeps_at_most_the_newest_hundred() {
        let ids: Vec<String> = (0..MAX_PER_CUSTOMER + 20)
            .map(|i| format!("o{i}"))
            .collect();
        let events = ids
            .iter()
            .map(|id| bowl_placed(id, "ann", Channel::App))
            .collect();
        let s = state(events);
        let kept: Vec<_> = s
            .notifications()
            .of_customer_after("ann", 0, t0())
            .collect();
        assert_eq!(kept.len(), MAX_PER_CUSTOMER);
        assert_eq!(s.notifications().len(), MAX_PER_CUSTOMER);
        assert!(matches!(
            &kept[0].kind,
            NotificationKind::OrderPlaced { order_id, .. } if order_id.as_str() == "o20"
        ));
    }

    #[test]
    fn plan_charges_tell_their_subscriber() {
        let s = state(vec![
            Event::Schedule(ScheduleEvent::ChargeRequested {
                charge_id: ChargeId::from_static("plan-p1-2026-11-23"),
                plan_id: PlanId::from_static("p1"),
                customer: "ann".into(),
                period_start: t0().date_naive(),
                days: vec![],
                gross: 5_000,
                credit_applied: 0,
                amount: 5_000,
                currency: usd(),
                payment_method: "tok_visa".into(),
                deadline: t0(),
            }),
            Event::Schedule(ScheduleEvent::ChargeSettled {
                charge_id: ChargeId::from_static("plan-p1-2026-11-23"),
                plan_id: PlanId::from_static("p1"),
                approved: false,
                reference: String::new(),
            }),
        ]);
        let told: Vec<_> = s
            .notifications()
            .of_customer_after("ann", 0, t0())
            .collect();
        assert_eq!(told.len(), 1);
        assert!(matches!(
            told[0].kind,
            NotificationKind::PlanChargeDeclined { amount: 5_000, .. }
        ));
    }

    #[test]
    fn a_plan_order_placed_in_its_fridge_is_told_and_reminded() {
        let deadline = t0() + Duration::hours(6);
        let s = state(vec![
            Event::Schedule(ScheduleEvent::OrderScheduled {
                order_id: o("sub-p1-2026-11-25"),
                plan_id: PlanId::from_static("p1"),
                customer: "ann".into(),
                date: t0().date_naive(),
                fridge_id: FridgeId::from_static("f1"),
                kitchen_id: protocol::KitchenId::from_static("k1"),
                meal_id: MealId::from_static("m1"),
                meal_name: "Bowl".into(),
                price: 1_250,
                currency: usd(),
                debit: 0,
            }),
            Event::Schedule(ScheduleEvent::OrderAvailableForPicking {
                order_id: o("sub-p1-2026-11-25"),
                pickup_code: "654321".into(),
                pickup_deadline: deadline,
            }),
        ]);
        let told: Vec<_> = s
            .notifications()
            .of_customer_after("ann", 0, t0())
            .collect();
        assert_eq!(told.len(), 1);
        assert_eq!(
            told[0].kind,
            NotificationKind::OrderAvailable {
                order_id: o("sub-p1-2026-11-25"),
                fridge_id: FridgeId::from_static("f1"),
                pickup_code: "654321".into(),
                pickup_deadline: deadline,
            }
        );
        let near = deadline - Duration::minutes(10);
        let due: Vec<_> = reminders_due(&s, near, Duration::minutes(30)).collect();
        assert_eq!(due, [&o("sub-p1-2026-11-25")]);
    }

    #[test]
    fn quiet_hours_are_set_cleared_and_a_repeat_records_nothing() {
        let q = QuietHours::parse("22:00", "07:00");
        let set = NotificationCommand::SetQuietHours {
            customer: "ann".into(),
            quiet_hours: q,
        };
        let mut s = DistrictState::default();
        let events = decide(&s, set.clone(), &ctx(t0())).unwrap_or_default();
        assert_eq!(events.len(), 1);
        apply(&mut s, events, t0());
        assert_eq!(s.notifications().quiet_hours("ann"), q);
        assert!(decide(&s, set, &ctx(t0())).unwrap_or_default().is_empty());
        let clear = NotificationCommand::SetQuietHours {
            customer: "ann".into(),
            quiet_hours: None,
        };
        let events = decide(&s, clear, &ctx(t0())).unwrap_or_default();
        apply(&mut s, events, t0());
        assert_eq!(s.notifications().quiet_hours("ann"), None);
    }

    #[test]
    fn the_json_shape_has_a_kind_and_the_kinds_fields() {
        let s = state(vec![
            bowl_placed("o1", "ann", Channel::App),
            purchased("o1"),
        ]);
        let paid = s.notifications().of_customer_after("ann", 0, t0()).last();
        let json = paid.map(Notification::to_json).unwrap_or_default();
        assert_eq!(json["kind"], "order_paid");
        assert_eq!(json["order_id"], "o1");
        assert_eq!(json["pickup_code"], "123456");
        assert_eq!(json["at"], "2026-11-25T12:00:00Z");
        assert!(json["id"].is_u64());
        assert!(!json.contains_key("customer"));
    }
}
