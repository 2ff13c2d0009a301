//! Subscriptions and kitchens in the district: the adapter between the pure
//! `scheduler` crate and the district's state and events. Still pure: no
//! clock (time comes from [`Context`]), no randomness (pickup codes come
//! from a seed in the command), no IO.
//!
//! It owns what the scheduler cannot know about the district:
//! - the catalog view the scheduler checks plans against, and the status of
//!   its orders ([`StateCatalog`]);
//! - how scheduled orders live among all orders: `OrderScheduled` creates an
//!   [`Order`] (status `scheduled`, stream `order-{id}`, in the customer's
//!   list), kitchen events and `OrderWithdrawn` move its status,
//!   `OrderAvailableForPicking` issues the pickup code and arms the
//!   pickup-deadline timer, so the existing pickup route and unclaimed timer
//!   serve it unchanged. The order book is the one record of that
//!   lifecycle: the scheduler keeps no copy and asks
//!   [`StateCatalog::order_status`], so a pickup or an unclaimed timer is
//!   seen by the scheduler without telling it;
//! - stock at "placed in fridge": the kitchen brings the unit, so on-hand
//!   rises and the unit is set aside for the order
//!   (`MealUnitPlacedForOrder`) in the same batch as the availability: that
//!   unit is the one the order's pickup takes;
//! - plan charges as outbox rows (`ChargeRequested` with an amount) and
//!   payment results routed back by charge id.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use protocol::catalog::FridgeStatus;
use protocol::money::Currency;
use protocol::orders::{Channel, OrderLine, OrderStatus, Withdrawal};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult};
use protocol::schedule::{
    CalendarDaySpec, KitchenEventSpec, PlanChange, PlanId, PlanSpec, ScheduleEvent,
};
use protocol::{ChargeId, Event, KitchenId};
use scheduler::{Catalog, MealInfo, Policy, ScheduleState};

use super::orders::{NewOrder, Order};
use super::outbox::OutboxKey;
use super::{Context, DistrictState, DomainError, Recorded};

/// Payment method recorded on scheduled orders (they are prepaid by plan).
pub const PREPAID_PAYMENT_METHOD: &str = "prepaid";

#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleCommand {
    CreatePlan {
        plan_id: PlanId,
        customer: String,
        spec: PlanSpec,
        policy: Policy,
    },
    /// `customer` is `None` when an admin acts.
    ChangePlan {
        plan_id: PlanId,
        customer: Option<String>,
        change: PlanChange,
        policy: Policy,
    },
    CancelPlan {
        plan_id: PlanId,
        customer: Option<String>,
        from: Option<NaiveDate>,
        /// Refund what the cancellation credits to the card instead of
        /// keeping it as credit.
        refund: bool,
        policy: Policy,
    },
    SetCalendarDay {
        date: NaiveDate,
        spec: CalendarDaySpec,
        policy: Policy,
    },
    /// Charges and materialisation due at `Context::now`.
    Tick { policy: Policy },
    /// `seed` draws the pickup codes (randomness is the adapter's).
    KitchenEvent {
        kitchen_id: KitchenId,
        spec: KitchenEventSpec,
        seed: u64,
        policy: Policy,
    },
}

/// The district as the scheduler sees it: its catalog and its order book.
pub struct StateCatalog<'a>(pub &'a DistrictState);

impl Catalog for StateCatalog<'_> {
    fn meal(&self, meal_id: &str) -> Option<MealInfo> {
        self.0.catalog.meal(meal_id).map(|m| MealInfo {
            name: m.spec.name.clone(),
            kitchen_id: m.spec.kitchen_id.clone(),
            price: m.spec.unit_price(),
        })
    }
    fn has_fridge(&self, fridge_id: &str) -> bool {
        self.0.catalog.fridge(fridge_id).is_some()
    }
    fn fridge_takes_orders(&self, fridge_id: &str) -> bool {
        self.0.catalog.fridge_is(fridge_id, FridgeStatus::Online)
    }
    fn has_kitchen(&self, kitchen_id: &str) -> bool {
        self.0.catalog.has_kitchen(kitchen_id)
    }
    fn order_status(&self, order_id: &str) -> Option<OrderStatus> {
        self.0.orders.get(order_id).map(|o| o.status)
    }
}

/// splitmix64: a tiny, well-mixed generator for pickup codes from a seed.
fn next_code(seed: &mut u64) -> String {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{:06}", z % 1_000_000)
}

pub fn decide(
    state: &DistrictState,
    cmd: ScheduleCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let sched = &*state.schedule;
    let catalog = StateCatalog(state);
    let now = ctx.now;
    let events = match cmd {
        ScheduleCommand::CreatePlan {
            plan_id,
            customer,
            spec,
            policy,
        } => scheduler::create_plan(sched, &catalog, plan_id, customer, spec, now, &policy)?,
        ScheduleCommand::ChangePlan {
            plan_id,
            customer,
            change,
            policy,
        } => scheduler::change_plan(
            sched,
            &catalog,
            &plan_id,
            customer.as_deref(),
            change,
            now,
            &policy,
        )?,
        ScheduleCommand::CancelPlan {
            plan_id,
            customer,
            from,
            refund,
            policy,
        } => {
            let mut events = scheduler::cancel_plan(
                sched,
                &catalog,
                &plan_id,
                customer.as_deref(),
                from,
                now,
                &policy,
            )?;
            if refund {
                // What this cancellation credited goes back to the card
                // (never more than the balance it leaves: a debt is netted).
                let mut after = sched.clone();
                let mut credited = 0;
                for e in &events {
                    after.apply(e);
                    credited += match e {
                        ScheduleEvent::OrderWithdrawn { credit, .. } => *credit,
                        ScheduleEvent::DayCredited { amount, .. } => *amount,
                        _ => 0,
                    };
                }
                let owner = after.plans.get(&plan_id).map(|p| p.customer.clone());
                if let Some(owner) = owner {
                    events.extend(scheduler::refund_credit(
                        &after, &owner, credited, now, &policy,
                    ));
                }
            }
            events
        }
        ScheduleCommand::SetCalendarDay { date, spec, policy } => {
            scheduler::set_calendar_day(sched, &catalog, date, spec, now, &policy)?
        }
        ScheduleCommand::Tick { policy } => scheduler::tick(sched, &catalog, now, &policy),
        ScheduleCommand::KitchenEvent {
            kitchen_id,
            spec,
            mut seed,
            policy,
        } => {
            // Food never goes into a fridge whose meals are withheld as
            // unsafe, or that is offline: the scheduler passes such
            // fridges' orders by (`StateCatalog::fridge_takes_orders`).
            let mut code = || next_code(&mut seed);
            let events = scheduler::kitchen_event(
                sched,
                &catalog,
                &kitchen_id,
                &spec,
                now,
                &policy,
                &mut code,
            )?;
            return Ok(with_stock(state, events));
        }
    };
    Ok(crate::preorders::refunds(state, events))
}

/// Precedes every availability with its unit arriving in the fridge set
/// aside for the order (`MealUnitPlacedForOrder`).
fn with_stock(state: &DistrictState, events: Vec<ScheduleEvent>) -> Vec<Event> {
    let mut out = Vec::with_capacity(events.len() * 2);
    for e in events {
        if let ScheduleEvent::OrderAvailableForPicking { order_id, .. } = &e {
            if let Some(o) = state.schedule.orders.get(order_id) {
                out.push(Event::MealUnitPlacedForOrder {
                    order_id: order_id.clone(),
                    fridge_id: o.fridge_id.clone(),
                    meal_id: o.meal_id.clone(),
                });
            }
        }
        out.push(Event::Schedule(e));
    }
    out
}

/// A payment result for a plan charge (the node routes results here when
/// their `order_id` is a known charge id).
pub fn record_payment(state: &DistrictState, result: PaymentResult) -> Vec<Event> {
    let (approved, reference) = match result.outcome {
        PaymentOutcome::Approved { reference } => (true, reference),
        PaymentOutcome::Declined { reason } => (false, reason),
    };
    let sched = &state.schedule;
    let events = match result.kind {
        PaymentKind::Charge => {
            scheduler::record_charge(sched, &result.order_id, approved, reference)
        }
        PaymentKind::Refund => {
            scheduler::record_refund(sched, &result.order_id, approved, reference)
        }
    };
    events.into_iter().map(Event::Schedule).collect()
}

/// Applies schedule events: the plan side to the scheduler's state, the
/// order side to the order book, charges to the outbox. Never changes what
/// the catalog shows by itself (the stock events that go with availability
/// do).
pub(crate) fn evolve(state: &mut DistrictState, e: &ScheduleEvent, rec: Recorded) -> bool {
    // Events the schedule does not keep (kitchen stages) leave its `Arc`
    // shared instead of copying it.
    if ScheduleState::keeps(e) {
        Arc::make_mut(&mut state.schedule).apply(e);
    }
    evolve_orders(state, e, rec);
    crate::preorders::evolve(state, e, rec);
    evolve_payments(state, e, rec);
    false
}

/// The order side: plan orders in the order book.
fn evolve_orders(state: &mut DistrictState, e: &ScheduleEvent, rec: Recorded) {
    match e {
        ScheduleEvent::OrderScheduled {
            order_id,
            customer,
            date,
            fridge_id,
            meal_id,
            meal_name,
            price,
            currency,
            ..
        } => {
            let order = Order::new(
                NewOrder {
                    order_id: order_id.clone(),
                    customer: customer.clone(),
                    channel: Channel::App,
                    fridge_id: fridge_id.clone(),
                    lines: vec![OrderLine {
                        meal_id: meal_id.clone(),
                        name: meal_name.clone(),
                        qty: 1,
                        unit_price: *price,
                    }],
                    currency: currency.clone(),
                    payment_method: PREPAID_PAYMENT_METHOD.into(),
                    hold_until: rec.at,
                    status: OrderStatus::Scheduled,
                    delivery_date: Some(*date),
                },
                rec.at,
            );
            state.orders.add(order, None);
        }
        ScheduleEvent::OrderWithdrawn {
            order_id,
            credit,
            reason,
            ..
        } => {
            let withdrawn = Withdrawal {
                reason: *reason,
                credited: *credit,
            };
            state.orders.update(order_id, |order| {
                order.withdrawn = Some(Box::new(withdrawn));
                order.advance(OrderStatus::Cancelled, rec.at);
            });
        }
        ScheduleEvent::OrderPrepared { order_id } => {
            advance(state, order_id, OrderStatus::Prepared, rec)
        }
        ScheduleEvent::OrderDispatched { order_id } => {
            advance(state, order_id, OrderStatus::Dispatched, rec)
        }
        ScheduleEvent::OrderAvailableForPicking {
            order_id,
            pickup_code,
            pickup_deadline,
        } => {
            let (code, deadline) = (pickup_code.as_str(), *pickup_deadline);
            let status = OrderStatus::Available;
            state
                .orders
                .await_pickup(order_id, status, code, deadline, rec.at);
        }
        _ => {}
    }
}

/// The money side: plan charges and credit refunds in the outbox, owed
/// when requested and settled by their result.
fn evolve_payments(state: &mut DistrictState, e: &ScheduleEvent, rec: Recorded) {
    match e {
        ScheduleEvent::ChargeRequested {
            charge_id,
            amount,
            currency,
            payment_method,
            deadline,
            ..
        } if *amount > 0 => {
            let req = plan_payment(
                PaymentKind::Charge,
                charge_id,
                *amount,
                currency,
                payment_method,
                *deadline,
                &rec,
            );
            let key = OutboxKey::PlanCharge {
                charge_id: charge_id.clone(),
            };
            state.outbox.owe(key, req, rec.seq);
        }
        ScheduleEvent::ChargeSettled { charge_id, .. } => {
            state.outbox.settle(&OutboxKey::PlanCharge {
                charge_id: charge_id.clone(),
            });
        }
        ScheduleEvent::CreditRefundRequested {
            charge_id,
            amount,
            currency,
            payment_method,
            deadline,
            ..
        } => {
            let req = plan_payment(
                PaymentKind::Refund,
                charge_id,
                *amount,
                currency,
                payment_method,
                *deadline,
                &rec,
            );
            let key = OutboxKey::PlanRefund {
                charge_id: charge_id.clone(),
            };
            state.outbox.owe(key, req, rec.seq);
        }
        ScheduleEvent::CreditRefundSettled { charge_id, .. } => {
            state.outbox.settle(&OutboxKey::PlanRefund {
                charge_id: charge_id.clone(),
            });
        }
        _ => {}
    }
}

/// The payment request for a plan charge or refund, keyed by the charge.
fn plan_payment(
    kind: PaymentKind,
    charge_id: &ChargeId,
    amount: i64,
    currency: &Currency,
    payment_method: &str,
    deadline: DateTime<Utc>,
    rec: &Recorded,
) -> PaymentRequest {
    PaymentRequest {
        kind,
        order_id: charge_id.clone().into(),
        district_id: rec.district_id.clone(),
        amount,
        currency: currency.clone(),
        payment_method: payment_method.to_string(),
        deadline_unix_ms: deadline.timestamp_millis(),
    }
}

fn advance(state: &mut DistrictState, order_id: &str, status: OrderStatus, rec: Recorded) {
    state
        .orders
        .update(order_id, |order| order.advance(status, rec.at));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use protocol::catalog::Fridge;
    use protocol::geo::{DistrictArea, GeoPoint};
    use protocol::schedule::KitchenStage;
    use protocol::{DistrictId, FridgeId, MealId, OrderId};

    fn state_with_order(fridge_status: FridgeStatus) -> DistrictState {
        let fridge = Fridge {
            fridge_id: FridgeId::from_static("f-1"),
            name: "Lobby".into(),
            address: String::new(),
            position: GeoPoint::new(42.3316, -83.0466).unwrap(),
            geohash: "dpsby".into(),
            vendor: "frostline-json".into(),
            status: fridge_status,
        };
        crate::given::state(vec![
            Event::FridgeRegistered {
                fridge,
                secret: None,
            },
            Event::Schedule(ScheduleEvent::OrderScheduled {
                order_id: OrderId::from_static("sub-p-2026-11-25"),
                plan_id: PlanId::from_static("p"),
                customer: "alice".into(),
                date: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
                fridge_id: FridgeId::from_static("f-1"),
                kitchen_id: KitchenId::from_static("k-1"),
                meal_id: MealId::from_static("m-1"),
                meal_name: "Bowl".into(),
                price: 1000,
                currency: "USD".to_string().try_into().unwrap(),
                debit: 0,
            }),
        ])
    }

    fn place(state: &DistrictState) -> Result<Vec<Event>, DomainError> {
        let ctx = Context {
            district_id: DistrictId::from_static("d"),
            area: DistrictArea::new(vec!["dpsby".into()]).unwrap(),
            now: crate::given::t0(),
            policy: Default::default(),
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        };
        decide(
            state,
            ScheduleCommand::KitchenEvent {
                kitchen_id: KitchenId::from_static("k-1"),
                spec: KitchenEventSpec {
                    stage: KitchenStage::PlacedInFridge,
                    date: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
                    fridge_id: None,
                    order_ids: None,
                },
                seed: 7,
                policy: Policy::default(),
            },
            &ctx,
        )
    }

    #[test]
    fn nothing_is_placed_in_a_quarantined_fridge() {
        assert_eq!(
            place(&state_with_order(FridgeStatus::Quarantined)),
            Err(DomainError::Schedule(
                scheduler::ScheduleError::FridgeUnavailable(FridgeId::from_static("f-1"))
            ))
        );
        let events = place(&state_with_order(FridgeStatus::Online)).unwrap();
        let kinds: Vec<_> = events.iter().map(Event::kind).collect();
        assert_eq!(
            kinds,
            [
                "OrderPrepared",
                "OrderDispatched",
                "MealUnitPlacedForOrder",
                "OrderAvailableForPicking"
            ]
        );
    }

    #[test]
    fn pickup_codes_are_six_digits_and_vary() {
        let mut seed = 1;
        let a = next_code(&mut seed);
        let b = next_code(&mut seed);
        assert_eq!((a.len(), b.len()), (6, 6));
        assert_ne!(a, b);
    }
}
