//! Money reconciliation over randomized months of plans (issue 17): swaps,
//! pauses, cancellations, holidays, kitchen closures, declined cards,
//! quarantined fridges, kitchens that skip a day, meals picked up or left
//! unclaimed. After the month, for every customer,
//!
//!   cash charged = picked up + unclaimed + credit (negative: debt) + refunded
//!
//! (a cancellation may ask for a refund to the card of what it credited),
//! nobody owes anything unless a
//! charge of theirs was declined (a debt is collected with a final charge
//! once no plan will charge again), and no order stays
//! `scheduled`, `prepared` or `dispatched` after its date, no prepaid day
//! stays unresolved. Pure: the district's order book is a map fed from the
//! same events, the clock is a value.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use protocol::money::Money;
use protocol::orders::OrderStatus;
use protocol::schedule::{
    CalendarDaySpec, KitchenEventSpec, KitchenStage, PlanChange, PlanDay, PlanSpec, ScheduleEvent,
};
use protocol::{ChargeId, FridgeId, KitchenId, MealId, OrderId, PlanId};
use scheduler::state::ChargeStatus;
use scheduler::{Catalog, MealInfo, Policy, ScheduleState, Stage};

const MEALS: [(&str, &str, i64); 4] = [
    ("m-salad", "k-greens", 1000),
    ("m-bowl", "k-greens", 1200),
    ("m-curry", "k-spice", 900),
    ("m-oats", "k-spice", 595),
];
const FRIDGES: [&str; 2] = ["f-lobby", "f-gym"];
const KITCHENS: [&str; 2] = ["k-greens", "k-spice"];
const CUSTOMERS: [&str; 3] = ["ann", "ben", "cy"];
/// Days simulated from 1 December: every plan (≤ 30 days, starting by the
/// 12th) has ended well before.
const DAYS: usize = 50;

/// The district as the scheduler sees it: the menu, fridges that may be
/// down, and the order book (statuses fed from the schedule's events and
/// from pickups).
#[derive(Default)]
struct District {
    down: BTreeSet<&'static str>,
    book: BTreeMap<OrderId, OrderStatus>,
}

impl District {
    fn apply(&mut self, e: &ScheduleEvent) {
        if let Some((order_id, status)) = support::order_status(e) {
            self.book.insert(order_id.clone(), status);
        }
    }
}

impl Catalog for District {
    fn meal(&self, meal_id: &str) -> Option<MealInfo> {
        MEALS
            .iter()
            .find(|(m, _, _)| *m == meal_id)
            .map(|(m, k, price)| MealInfo {
                name: m.to_string(),
                kitchen_id: KitchenId::from_static(k),
                price: Money::new(*price, "USD".to_string().try_into().unwrap()),
            })
    }
    fn has_fridge(&self, fridge_id: &str) -> bool {
        FRIDGES.contains(&fridge_id)
    }
    fn fridge_takes_orders(&self, fridge_id: &str) -> bool {
        self.has_fridge(fridge_id) && !self.down.contains(fridge_id)
    }
    fn has_kitchen(&self, kitchen_id: &str) -> bool {
        KITCHENS.contains(&kitchen_id)
    }
    fn order_status(&self, order_id: &str) -> Option<OrderStatus> {
        self.book.get(order_id).copied()
    }
}

/// One plan to try to create on its first day: customer, fridge, start
/// (days after 1 December), length in days, meal index per weekday 1..=7
/// (`None`: no delivery that weekday).
type PlanScript = (usize, usize, i64, i64, [Option<usize>; 7]);

/// What happens on one day, each a dice roll read by [`Month::day`].
#[derive(Debug, Clone, Copy)]
struct DayScript {
    fridge_down: u8,
    change: u8,
    change_plan: u8,
    change_meal: u8,
    closure: u8,
    decline: u8,
    kitchen_skips: u8,
    eve: u8,
    pickups: u8,
}

fn day_script() -> impl Strategy<Value = DayScript> {
    any::<[u8; 9]>().prop_map(|b| DayScript {
        fridge_down: b[0],
        change: b[1],
        change_plan: b[2],
        change_meal: b[3],
        closure: b[4],
        decline: b[5],
        kitchen_skips: b[6],
        eve: b[7],
        pickups: b[8],
    })
}

fn plan_script() -> impl Strategy<Value = PlanScript> {
    (
        0..CUSTOMERS.len(),
        0..FRIDGES.len(),
        1i64..12,
        3i64..30,
        prop::array::uniform7(prop::option::weighted(0.6, 0..MEALS.len())),
    )
}

struct Month {
    state: ScheduleState,
    district: District,
    policy: Policy,
    plans: Vec<PlanId>,
    /// Approved cash per customer.
    cash: BTreeMap<String, i64>,
    /// Approved refunds to the card per customer.
    refunded: BTreeMap<String, i64>,
}

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

fn at(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0).unwrap())
}

impl Month {
    fn record(&mut self, events: &[ScheduleEvent]) {
        for e in events {
            self.state.apply(e);
            self.district.apply(e);
        }
    }

    /// The job at `now`; every charge it asks for is answered at once,
    /// declined when `decline`; then the job again (the paid weeks' orders).
    fn tick(&mut self, now: DateTime<Utc>, decline: bool) {
        let e = scheduler::tick(&self.state, &self.district, now, &self.policy);
        self.record(&e);
        let pending: Vec<ChargeId> = self
            .state
            .charges
            .values()
            .filter(|c| c.status == ChargeStatus::Pending)
            .map(|c| c.charge_id.clone())
            .collect();
        for id in pending {
            let approved = !decline;
            let e = scheduler::record_charge(&self.state, &id, approved, "ref".into());
            if let Some(ScheduleEvent::ChargeSettled { charge_id, .. }) = e.first() {
                if approved {
                    let c = &self.state.charges[charge_id];
                    *self.cash.entry(c.customer.clone()).or_insert(0) += c.amount;
                }
            }
            self.record(&e);
        }
        let e = scheduler::tick(&self.state, &self.district, now, &self.policy);
        self.record(&e);
        // Refunds are answered too (declined with the cards).
        let pending: Vec<ChargeId> = self
            .state
            .refunds
            .values()
            .filter(|r| r.status == ChargeStatus::Pending)
            .map(|r| r.charge_id.clone())
            .collect();
        for id in pending {
            let e = scheduler::record_refund(&self.state, &id, !decline, "ref".into());
            if !decline {
                let r = &self.state.refunds[&id];
                *self.refunded.entry(r.customer.clone()).or_insert(0) += r.amount;
            }
            self.record(&e);
        }
    }

    fn place(&mut self, kitchen: &'static str, date: NaiveDate, now: DateTime<Utc>) {
        let spec = KitchenEventSpec {
            stage: KitchenStage::PlacedInFridge,
            date,
            fridge_id: None,
            order_ids: None,
        };
        if let Ok(e) = scheduler::kitchen_event(
            &self.state,
            &self.district,
            &KitchenId::from_static(kitchen),
            &spec,
            now,
            &self.policy,
            &mut || "123456".into(),
        ) {
            self.record(&e);
        }
    }

    fn create(&mut self, i: usize, p: &PlanScript, now: DateTime<Utc>) {
        let (customer, fridge, start, len, week) = *p;
        let days: Vec<PlanDay> = (1u8..=7)
            .zip(week)
            .filter_map(|(weekday, meal)| {
                meal.map(|m| PlanDay {
                    weekday,
                    meal_id: MealId::from_static(MEALS[m].0),
                })
            })
            .collect();
        let start_date = first_day() + Duration::days(start);
        let spec = PlanSpec {
            fridge_id: FridgeId::from_static(FRIDGES[fridge]),
            days,
            start_date,
            end_date: start_date + Duration::days(len),
            payment_method: "tok".into(),
        };
        let plan_id = PlanId::parse(format!("p{i}")).unwrap();
        let made = scheduler::create_plan(
            &self.state,
            &self.district,
            plan_id.clone(),
            CUSTOMERS[customer].into(),
            spec,
            now,
            &self.policy,
        );
        if let Ok(e) = made {
            self.record(&e);
            self.plans.push(plan_id);
        }
    }

    /// A swap, a pause, a resume or a cancellation, from the earliest date.
    fn change(&mut self, s: &DayScript, now: DateTime<Utc>) {
        let Some(plan_id) = self
            .plans
            .get(usize::from(s.change_plan) % self.plans.len().max(1))
            .cloned()
        else {
            return;
        };
        let customer = self.state.plans[&plan_id].customer.clone();
        let meal = MealId::from_static(MEALS[usize::from(s.change_meal) % MEALS.len()].0);
        let swap = || PlanChange {
            days: Some(
                (1..=5)
                    .map(|weekday| PlanDay {
                        weekday,
                        meal_id: meal.clone(),
                    })
                    .collect(),
            ),
            ..PlanChange::default()
        };
        let e = match s.change % 8 {
            0 | 1 => scheduler::change_plan(
                &self.state,
                &self.district,
                &plan_id,
                Some(&customer),
                swap(),
                now,
                &self.policy,
            ),
            2 => scheduler::change_plan(
                &self.state,
                &self.district,
                &plan_id,
                Some(&customer),
                PlanChange {
                    paused: Some(s.change_meal.is_multiple_of(2)),
                    ..PlanChange::default()
                },
                now,
                &self.policy,
            ),
            3 if s.change_meal < 40 => scheduler::cancel_plan(
                &self.state,
                &self.district,
                &plan_id,
                Some(&customer),
                None,
                now,
                &self.policy,
            )
            .map(|mut e| {
                // Half the cancellations ask for a refund to the card of what
                // they credited (as the district's CancelPlan does).
                if s.change_meal.is_multiple_of(2) {
                    let mut after = self.state.clone();
                    let mut credited = 0;
                    for x in &e {
                        after.apply(x);
                        credited += match x {
                            ScheduleEvent::OrderWithdrawn { credit, .. } => *credit,
                            ScheduleEvent::DayCredited { amount, .. } => *amount,
                            _ => 0,
                        };
                    }
                    e.extend(scheduler::refund_credit(
                        &after,
                        &customer,
                        credited,
                        now,
                        &self.policy,
                    ));
                }
                e
            }),
            _ => return,
        };
        if let Ok(e) = e {
            self.record(&e);
        }
    }

    fn day(&mut self, n: usize, s: &DayScript, new_plans: &[(usize, &PlanScript)]) {
        let today = first_day() + Duration::days(n as i64);
        // A fridge is quarantined (or offline) for the day, now and then.
        self.district.down.clear();
        if s.fridge_down < 20 {
            self.district
                .down
                .insert(FRIDGES[usize::from(s.fridge_down) % FRIDGES.len()]);
        }
        for (i, p) in new_plans {
            self.create(*i, p, at(today, 8));
        }
        if s.change < 64 {
            self.change(s, at(today, 9));
        }
        // A holiday or a kitchen closure announced for a day soon.
        if s.closure < 12 {
            let date = today + Duration::days(i64::from(s.closure % 5) + 1);
            let kitchen_id = (!s.closure.is_multiple_of(3))
                .then(|| KitchenId::from_static(KITCHENS[usize::from(s.closure) % 2]));
            let spec = CalendarDaySpec {
                working: s.closure % 7 == 6,
                kitchen_id,
                note: String::new(),
            };
            if let Ok(e) = scheduler::set_calendar_day(
                &self.state,
                &self.district,
                date,
                spec,
                at(today, 10),
                &self.policy,
            ) {
                self.record(&e);
            }
        }
        self.tick(at(today, 11), s.decline < 25);
        // The kitchens place today's meals, unless one skips the day; some
        // place tomorrow's on the eve.
        for (k, kitchen) in KITCHENS.iter().enumerate() {
            if s.kitchen_skips < 30 && usize::from(s.kitchen_skips) % 2 == k {
                continue;
            }
            self.place(kitchen, today, at(today, 12));
            if s.eve % 2 == 1 {
                self.place(kitchen, today + Duration::days(1), at(today, 18));
            }
        }
        // Evening: what was placed today is picked up or left unclaimed.
        let mut bit = 0;
        for o in self.state.orders.values().filter(|o| o.date == today) {
            if self.district.book.get(&o.order_id) == Some(&OrderStatus::Available) {
                let picked = (s.pickups >> (bit % 8)) & 1 == 1;
                bit += 1;
                let status = if picked {
                    OrderStatus::PickedUp
                } else {
                    OrderStatus::Unclaimed
                };
                self.district.book.insert(o.order_id.clone(), status);
            }
        }
        self.tick(at(today, 23), false);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        // PROPTEST_CASES soaks it longer.
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
    ))]

    #[test]
    fn every_cent_charged_is_delivered_or_credited(
        plans in prop::collection::vec(plan_script(), 1..6),
        days in prop::collection::vec(day_script(), DAYS),
    ) {
        let mut m = Month {
            state: ScheduleState::default(),
            district: District::default(),
            policy: Policy::default(),
            plans: vec![],
            cash: BTreeMap::new(),
            refunded: BTreeMap::new(),
        };
        for (n, s) in days.iter().enumerate() {
            // Plans are created in the days before they start.
            let new: Vec<(usize, &PlanScript)> = plans
                .iter()
                .enumerate()
                .filter(|(_, p)| (p.2 - 3).max(0) as usize == n)
                .collect();
            m.day(n, s, &new);
        }
        let today = first_day() + Duration::days(DAYS as i64);
        for o in m.state.orders.values() {
            let stage = o.stage(&m.district);
            prop_assert!(
                !(o.date < today && matches!(stage, Stage::Scheduled | Stage::Prepared | Stage::Dispatched)),
                "{} stayed {:?} after its date", o.order_id, stage
            );
        }
        prop_assert!(m.state.prepaid_days.is_empty(), "unresolved prepaid days: {:?}", m.state.prepaid_days);
        for customer in CUSTOMERS {
            let delivered: i64 = m
                .state
                .orders
                .values()
                .filter(|o| o.customer == customer)
                .filter(|o| matches!(
                    m.district.book.get(&o.order_id),
                    Some(OrderStatus::PickedUp | OrderStatus::Unclaimed)
                ))
                .map(|o| o.price)
                .sum();
            let cash = m.cash.get(customer).copied().unwrap_or(0);
            let credit = m.state.credit(customer);
            let refunded = m.refunded.get(customer).copied().unwrap_or(0);
            let declined = m.state.charges.values().any(|c| c.customer == customer && c.status == ChargeStatus::Declined);
            prop_assert!(credit >= 0 || declined, "{} still owes {} after every plan ended", customer, -credit);
            prop_assert_eq!(
                cash,
                delivered + credit + refunded,
                "{}: cash {} = delivered {} + credit {} + refunded {}",
                customer, cash, delivered, credit, refunded
            );
        }
    }
}
