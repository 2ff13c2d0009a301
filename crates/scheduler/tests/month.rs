//! A month of plans driven by clock values: weekends, a holiday, a kitchen
//! closure announced mid-week, changes right before and after the cutoff, a
//! cancellation with credit, and materialisation that runs twice.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use protocol::money::Money;
use protocol::orders::OrderStatus;
use protocol::schedule::{
    CalendarDaySpec, KitchenEventSpec, KitchenStage, PlanChange, PlanDay, PlanSpec, ScheduleEvent,
};
use protocol::{ChargeId, FridgeId, KitchenId, MealId, OrderId, PlanId, ValidationError};
use scheduler::state::ChargeStatus;
use scheduler::{Catalog, MealInfo, Policy, ScheduleError, ScheduleState, Stage};

/// The district as the scheduler sees it: a menu, and a tiny order book fed
/// from the same events as the schedule, as the district's is.
struct Menu {
    meals: BTreeMap<&'static str, (&'static str, i64)>,
    book: BTreeMap<OrderId, OrderStatus>,
}

impl Menu {
    fn new() -> Menu {
        Menu {
            meals: BTreeMap::from([
                ("m-salad", ("k-greens", 1000)),
                ("m-bowl", ("k-greens", 1200)),
                ("m-curry", ("k-spice", 900)),
            ]),
            book: BTreeMap::new(),
        }
    }

    /// What the district's order book does with a schedule event.
    fn apply(&mut self, e: &ScheduleEvent) {
        if let Some((order_id, status)) = support::order_status(e) {
            self.book.insert(order_id.clone(), status);
        }
    }
}

impl Catalog for Menu {
    fn meal(&self, meal_id: &str) -> Option<MealInfo> {
        self.meals.get(meal_id).map(|(k, price)| MealInfo {
            name: meal_id.trim_start_matches("m-").to_string(),
            kitchen_id: KitchenId::from_static(k),
            price: Money::new(*price, "USD".to_string().try_into().unwrap()),
        })
    }
    fn has_fridge(&self, fridge_id: &str) -> bool {
        fridge_id == "f-lobby"
    }
    fn fridge_takes_orders(&self, fridge_id: &str) -> bool {
        self.has_fridge(fridge_id)
    }
    fn has_kitchen(&self, kitchen_id: &str) -> bool {
        self.meals.values().any(|(k, _)| *k == kitchen_id)
    }
    fn order_status(&self, order_id: &str) -> Option<OrderStatus> {
        self.book.get(order_id).copied()
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
}

fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap()
}

fn days(spec: &[(u8, &'static str)]) -> Vec<PlanDay> {
    spec.iter()
        .map(|(w, m)| PlanDay {
            weekday: *w,
            meal_id: MealId::from_static(m),
        })
        .collect()
}

struct World {
    state: ScheduleState,
    menu: Menu,
    policy: Policy,
}

impl World {
    fn new() -> World {
        World {
            state: ScheduleState::default(),
            menu: Menu::new(),
            policy: Policy::default(),
        }
    }

    fn record(&mut self, events: &[ScheduleEvent]) {
        for e in events {
            self.state.apply(e);
            self.menu.apply(e);
        }
    }

    /// The kitchens place every order of the day `now` is in (as they do
    /// on a normal day; a refusal, e.g. after the pickup window, places
    /// nothing).
    fn kitchens_deliver(&mut self, now: DateTime<Utc>) {
        let today = scheduler::local_date(now, &self.policy);
        for kitchen in ["k-greens", "k-spice"] {
            let spec = KitchenEventSpec {
                stage: KitchenStage::PlacedInFridge,
                date: today,
                fridge_id: None,
                order_ids: None,
            };
            if let Ok(e) = scheduler::kitchen_event(
                &self.state,
                &self.menu,
                &KitchenId::from_static(kitchen),
                &spec,
                now,
                &self.policy,
                &mut || "123456".into(),
            ) {
                self.record(&e);
            }
        }
    }

    /// The kitchens deliver the day's orders, then the job runs at `now`,
    /// pays every charge it asks for, runs again (the orders of paid
    /// weeks); returns the new order ids.
    fn day_passes(&mut self, now: DateTime<Utc>) -> Vec<OrderId> {
        self.kitchens_deliver(now);
        let events = scheduler::tick(&self.state, &self.menu, now, &self.policy);
        self.record(&events);
        let pending: Vec<ChargeId> = self
            .state
            .charges
            .values()
            .filter(|c| c.status == ChargeStatus::Pending)
            .map(|c| c.charge_id.clone())
            .collect();
        for id in pending {
            let e = scheduler::record_charge(&self.state, &id, true, format!("ref-{id}"));
            self.record(&e);
        }
        let events2 = scheduler::tick(&self.state, &self.menu, now, &self.policy);
        self.record(&events2);
        assert!(
            scheduler::tick(&self.state, &self.menu, now, &self.policy).is_empty(),
            "a third run at the same time changes nothing"
        );
        events
            .iter()
            .chain(&events2)
            .filter_map(|e| match e {
                ScheduleEvent::OrderScheduled { order_id, .. } => Some(order_id.clone()),
                _ => None,
            })
            .collect()
    }

    fn create(
        &mut self,
        id: &'static str,
        who: &str,
        d: &[(u8, &'static str)],
        from: u32,
        to: u32,
        now: DateTime<Utc>,
    ) {
        let spec = PlanSpec {
            fridge_id: FridgeId::from_static("f-lobby"),
            days: days(d),
            start_date: day(from),
            end_date: day(to),
            payment_method: "tok_visa".into(),
        };
        let e = scheduler::create_plan(
            &self.state,
            &self.menu,
            PlanId::from_static(id),
            who.into(),
            spec,
            now,
            &self.policy,
        )
        .unwrap();
        self.record(&e);
    }

    /// Alice replaces her week with `week` (meals Monday to Friday).
    fn alice_changes(
        &self,
        week: [&'static str; 5],
        from: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduleEvent>, ScheduleError> {
        let d: Vec<(u8, &'static str)> = (1..=5).zip(week).collect();
        let change = PlanChange {
            days: Some(days(&d)),
            from,
            ..PlanChange::default()
        };
        scheduler::change_plan(
            &self.state,
            &self.menu,
            &PlanId::from_static("alice-plan"),
            Some("alice"),
            change,
            now,
            &self.policy,
        )
    }

    fn stage_on(&self, plan: &'static str, d: NaiveDate) -> Option<(MealId, Stage)> {
        self.state
            .active_order(&self.menu, &PlanId::from_static(plan), d)
            .map(|o| (o.meal_id.clone(), o.stage(&self.menu)))
    }

    fn standing(&self, plan: &str) -> Vec<NaiveDate> {
        self.state
            .orders
            .values()
            .filter(|o| {
                o.plan_id.as_deref() == Some(plan) && o.stage(&self.menu) != Stage::Withdrawn
            })
            .map(|o| o.date)
            .collect()
    }
}

const WEEKDAYS_SALAD: &[(u8, &str)] = &[
    (1, "m-salad"),
    (2, "m-salad"),
    (3, "m-salad"),
    (4, "m-salad"),
    (5, "m-bowl"),
];

#[test]
fn a_month_of_plans() {
    let mut w = World::new();
    // Tuesday 1 December, morning: Christmas is declared a holiday, Alice
    // subscribes Mon–Fri from Wednesday, Bob curry on Mon/Wed/Fri.
    let e = scheduler::set_calendar_day(
        &w.state,
        &w.menu,
        day(25),
        CalendarDaySpec {
            working: false,
            kitchen_id: None,
            note: "Christmas".into(),
        },
        at(1, 9, 0),
        &w.policy,
    )
    .unwrap();
    w.record(&e);
    w.create("alice-plan", "alice", WEEKDAYS_SALAD, 2, 31, at(1, 10, 0));
    w.create(
        "bob-plan",
        "bob",
        &[(1, "m-curry"), (3, "m-curry"), (5, "m-curry")],
        2,
        31,
        at(1, 10, 0),
    );

    // Starting tomorrow needs the change before today's cutoff.
    let late = PlanSpec {
        fridge_id: FridgeId::from_static("f-lobby"),
        days: days(&[(4, "m-salad")]),
        start_date: day(2),
        end_date: day(31),
        payment_method: "tok_visa".into(),
    };
    assert_eq!(
        scheduler::create_plan(
            &w.state,
            &w.menu,
            PlanId::from_static("late"),
            "carol".into(),
            late,
            at(1, 18, 30),
            &w.policy
        ),
        Err(ScheduleError::AfterCutoff { earliest: day(3) })
    );

    // Three days ahead: Wednesday to Friday; one charge per plan for this week.
    let made = w.day_passes(at(1, 10, 5));
    assert_eq!(
        made,
        [
            "sub-alice-plan-2026-12-02",
            "sub-alice-plan-2026-12-03",
            "sub-alice-plan-2026-12-04",
            "sub-bob-plan-2026-12-02",
            "sub-bob-plan-2026-12-04",
        ]
    );
    let alice_week1 = &w.state.charges["plan-alice-plan-2026-11-30"];
    assert_eq!(
        alice_week1.amount,
        1000 + 1000 + 1200,
        "Wed, Thu salad; Fri bowl"
    );

    // The job runs again (a restart mid-run, a second timer): nothing new.
    let before = (w.state.clone(), w.menu.book.clone());
    assert!(w.day_passes(at(1, 10, 6)).is_empty());
    assert_eq!((w.state.clone(), w.menu.book.clone()), before);

    // Through the weekend: Saturday and Sunday are never materialised.
    for d in 2..=7 {
        w.day_passes(at(d, 6, 0));
    }
    assert_eq!(
        w.standing("alice-plan"),
        [day(2), day(3), day(4), day(7), day(8), day(9), day(10)]
    );
    assert_eq!(
        w.state.charges["plan-alice-plan-2026-12-07"].amount,
        4 * 1000 + 1200
    );
    assert_eq!(w.state.charges["plan-bob-plan-2026-12-07"].amount, 3 * 900);

    // Tuesday 8th, 17:59: Alice swaps Wednesday to the bowl. Just before the
    // cutoff, so from Wednesday 9th — whose order is not cooked yet.
    const SWAP: [&str; 5] = ["m-salad", "m-salad", "m-bowl", "m-salad", "m-bowl"];
    let e = w.alice_changes(SWAP, None, at(8, 17, 59)).unwrap();
    assert!(matches!(e[0], ScheduleEvent::PlanChanged { from, .. } if from == day(9)));
    w.record(&e);
    w.day_passes(at(8, 17, 59));
    assert_eq!(
        w.stage_on("alice-plan", day(9)),
        Some((MealId::from_static("m-bowl"), Stage::Scheduled))
    );
    assert_eq!(
        w.state
            .active_order(&w.menu, &PlanId::from_static("alice-plan"), day(9))
            .unwrap()
            .order_id,
        "sub-alice-plan-2026-12-09-2",
        "made again under the next id"
    );
    assert_eq!(
        w.state.credit("alice"),
        1000 - 1200,
        "salad credited, bowl drawn"
    );

    // One minute later the same change for Wednesday is refused, and nothing moves.
    assert_eq!(
        w.alice_changes(SWAP, Some(day(9)), at(8, 18, 0)),
        Err(ScheduleError::AfterCutoff { earliest: day(10) })
    );
    // Someone else's plan does not exist for Bob.
    assert_eq!(
        scheduler::cancel_plan(
            &w.state,
            &w.menu,
            &PlanId::from_static("alice-plan"),
            Some("bob"),
            None,
            at(8, 18, 0),
            &w.policy
        ),
        Err(ScheduleError::UnknownPlan(PlanId::from_static(
            "alice-plan"
        )))
    );

    // Wednesday 9th: the spice kitchen announces it is closed on Friday 11th.
    w.day_passes(at(9, 6, 0));
    assert_eq!(
        w.stage_on("bob-plan", day(11)),
        Some((MealId::from_static("m-curry"), Stage::Scheduled))
    );
    // The greens kitchen already cooked Thursday's and Friday's salads.
    let cooked = KitchenEventSpec {
        stage: KitchenStage::Prepared,
        date: day(10),
        fridge_id: None,
        order_ids: None,
    };
    let e = scheduler::kitchen_event(
        &w.state,
        &w.menu,
        &KitchenId::from_static("k-greens"),
        &cooked,
        at(9, 7, 0),
        &w.policy,
        &mut || "123456".into(),
    )
    .unwrap();
    assert_eq!(e.len(), 1);
    w.record(&e);
    let closure = CalendarDaySpec {
        working: false,
        kitchen_id: Some(KitchenId::from_static("k-spice")),
        note: "boiler".into(),
    };
    let e =
        scheduler::set_calendar_day(&w.state, &w.menu, day(11), closure, at(9, 10, 0), &w.policy)
            .unwrap();
    w.record(&e);
    assert_eq!(w.stage_on("bob-plan", day(11)), None, "withdrawn");
    assert_eq!(w.state.credit("bob"), 900, "and credited");
    assert!(
        w.stage_on("alice-plan", day(11)).is_some(),
        "other kitchens still cook"
    );
    w.day_passes(at(9, 10, 1));
    assert_eq!(
        w.stage_on("bob-plan", day(11)),
        None,
        "not made on a closed day"
    );

    // Alice's change from Thursday would swap the salad, but Thursday's is cooked.
    let e = w
        .alice_changes(
            ["m-salad", "m-salad", "m-bowl", "m-bowl", "m-bowl"],
            None,
            at(9, 11, 0),
        )
        .unwrap();
    w.record(&e);
    w.day_passes(at(9, 11, 0));
    assert_eq!(
        w.stage_on("alice-plan", day(10)),
        Some((MealId::from_static("m-salad"), Stage::Prepared)),
        "produced meals are never touched"
    );

    // Noon: the boiler is fixed; Friday is still before its cutoff, so Bob's curry is made again.
    let reopen = CalendarDaySpec {
        working: true,
        kitchen_id: Some(KitchenId::from_static("k-spice")),
        note: String::new(),
    };
    let e =
        scheduler::set_calendar_day(&w.state, &w.menu, day(11), reopen, at(9, 12, 0), &w.policy)
            .unwrap();
    w.record(&e);
    w.day_passes(at(9, 12, 0));
    assert_eq!(
        w.stage_on("bob-plan", day(11)),
        Some((MealId::from_static("m-curry"), Stage::Scheduled))
    );
    assert_eq!(w.state.credit("bob"), 0, "the credit pays for it again");

    // A closure announced on Friday evening (Monday's cutoff has not passed
    // yet) withdraws Monday's unproduced order; reopening on Sunday evening
    // is too late for Monday, so it is not made again and stays credited.
    w.day_passes(at(10, 6, 0));
    w.day_passes(at(11, 6, 0));
    assert_eq!(
        w.stage_on("bob-plan", day(14)),
        Some((MealId::from_static("m-curry"), Stage::Scheduled))
    );
    let closure = CalendarDaySpec {
        working: false,
        kitchen_id: Some(KitchenId::from_static("k-spice")),
        note: "again".into(),
    };
    let e = scheduler::set_calendar_day(
        &w.state,
        &w.menu,
        day(14),
        closure,
        at(11, 19, 0),
        &w.policy,
    )
    .unwrap();
    w.record(&e);
    assert_eq!(w.stage_on("bob-plan", day(14)), None);
    assert_eq!(w.state.credit("bob"), 900);
    let reopen = CalendarDaySpec {
        working: true,
        kitchen_id: Some(KitchenId::from_static("k-spice")),
        note: String::new(),
    };
    let e =
        scheduler::set_calendar_day(&w.state, &w.menu, day(14), reopen, at(13, 19, 0), &w.policy)
            .unwrap();
    w.record(&e);
    w.day_passes(at(13, 19, 0));
    assert_eq!(
        w.stage_on("bob-plan", day(14)),
        None,
        "Monday's cutoff has passed"
    );
    assert_eq!(w.state.credit("bob"), 900);

    // Monday 14th, 09:00: Alice cancels. From Tuesday on, the unproduced
    // orders (Tue–Thu) and the prepaid Friday are credited.
    w.day_passes(at(14, 6, 0));
    assert_eq!(w.standing("alice-plan").last(), Some(&day(17)));
    let credit_before = w.state.credit("alice");
    let e = scheduler::cancel_plan(
        &w.state,
        &w.menu,
        &PlanId::from_static("alice-plan"),
        Some("alice"),
        None,
        at(14, 9, 0),
        &w.policy,
    )
    .unwrap();
    let withdrawn = e
        .iter()
        .filter(|e| matches!(e, ScheduleEvent::OrderWithdrawn { .. }))
        .count();
    let credited_days = e
        .iter()
        .filter(|e| matches!(e, ScheduleEvent::DayCredited { .. }))
        .count();
    assert_eq!((withdrawn, credited_days), (3, 1), "{e:?}");
    w.record(&e);
    // Tue salad 1000 + Wed bowl 1200 + Thu bowl 1200 + Fri bowl 1200.
    assert_eq!(
        w.state.credit("alice") - credit_before,
        1000 + 1200 + 1200 + 1200
    );
    assert_eq!(w.standing("alice-plan").last(), Some(&day(14)));

    // The rest of the month: Bob's credit pays part of his next week; no
    // order on a weekend or on Christmas; Alice is never charged again.
    for d in 15..=31 {
        w.day_passes(at(d, 6, 0));
    }
    assert_eq!(
        w.state.charges["plan-bob-plan-2026-12-21"].credit_applied,
        900
    );
    assert!(!w.state.charges.contains_key("plan-alice-plan-2026-12-21"));
    let weekends_or_holiday = w.state.orders.values().filter(|o| {
        o.stage(&w.menu) != Stage::Withdrawn
            && (!scheduler::calendar::default_working(o.date) || o.date == day(25))
    });
    assert_eq!(weekends_or_holiday.count(), 0);
    assert_eq!(
        w.standing("bob-plan"),
        [
            day(2),
            day(4),
            day(7),
            day(9),
            day(11),
            day(16),
            day(18),
            day(21),
            day(23),
            day(28),
            day(30)
        ]
    );
    // Every Bob's day is paid exactly once: charges net of credits match orders.
    let charged: i64 = w
        .state
        .charges
        .values()
        .filter(|c| c.plan_id == "bob-plan")
        .map(|c| c.amount)
        .sum();
    let delivered: i64 = w
        .state
        .orders
        .values()
        .filter(|o| {
            o.plan_id.as_deref() == Some("bob-plan") && o.stage(&w.menu) != Stage::Withdrawn
        })
        .map(|o| o.price)
        .sum();
    assert_eq!(charged - w.state.credit("bob"), delivered);
}

#[test]
fn a_late_payment_credits_the_days_it_missed() {
    let mut w = World::new();
    w.create("p", "pat", WEEKDAYS_SALAD, 2, 31, at(1, 10, 0));
    let e = scheduler::tick(&w.state, &w.menu, at(1, 10, 0), &w.policy);
    w.record(&e);
    // The payment result arrives on Thursday evening, after Friday's cutoff
    // (the earliest date is Monday): the paid Wednesday to Friday can no
    // longer be cooked, so they are credited and nothing is made.
    let e = scheduler::record_charge(&w.state, "plan-p-2026-11-30", true, "ref".into());
    w.record(&e);
    let e = scheduler::tick(&w.state, &w.menu, at(3, 19, 0), &w.policy);
    w.record(&e);
    assert!(!e
        .iter()
        .any(|e| matches!(e, ScheduleEvent::OrderScheduled { date, .. } if *date < day(7))));
    assert_eq!(w.state.credit("pat"), 1000 + 1000 + 1200);
    assert!(w.state.prepaid_days.is_empty());
    // The next week is charged net of that credit.
    w.day_passes(at(4, 6, 0));
    assert_eq!(w.state.charges["plan-p-2026-12-07"].credit_applied, 3200);
    assert!(scheduler::tick(&w.state, &w.menu, at(4, 6, 0), &w.policy).is_empty());
}

#[test]
fn a_paused_week_is_credited_and_resuming_orders_again() {
    let mut w = World::new();
    w.create("p", "pia", WEEKDAYS_SALAD, 2, 31, at(1, 10, 0));
    w.day_passes(at(1, 10, 0));
    for d in 2..=4 {
        w.day_passes(at(d, 6, 0)); // Wed 2 .. Mon 7 ordered; week of the 7th paid
    }
    let pause = |paused: bool, from: Option<NaiveDate>| PlanChange {
        paused: Some(paused),
        from,
        ..PlanChange::default()
    };
    // Friday 4th, 09:00: pause from the earliest date (Monday 7th).
    let e = scheduler::change_plan(
        &w.state,
        &w.menu,
        &PlanId::from_static("p"),
        Some("pia"),
        pause(true, None),
        at(4, 9, 0),
        &w.policy,
    )
    .unwrap();
    w.record(&e);
    assert_eq!(
        w.stage_on("p", day(4)).map(|s| s.1),
        Some(Stage::Available),
        "Friday is kept (placed this morning)"
    );
    assert_eq!(w.stage_on("p", day(7)), None, "Monday's order withdrawn");
    assert_eq!(
        w.state.credit("pia"),
        4 * 1000 + 1200,
        "the whole paid week"
    );
    for d in 5..=9 {
        w.day_passes(at(d, 6, 0));
    }
    assert!(
        w.standing("p").iter().all(|d| *d <= day(4)),
        "nothing while paused"
    );
    // Wednesday 9th: resume from Monday 14th; the next week is paid from the credit.
    let e = scheduler::change_plan(
        &w.state,
        &w.menu,
        &PlanId::from_static("p"),
        Some("pia"),
        pause(false, Some(day(14))),
        at(9, 9, 0),
        &w.policy,
    )
    .unwrap();
    w.record(&e);
    for d in 10..=14 {
        w.day_passes(at(d, 6, 0));
    }
    assert_eq!(w.standing("p").last(), Some(&day(17)));
    assert!(
        !w.standing("p").contains(&day(11)),
        "still paused on the 11th"
    );
    let week = &w.state.charges["plan-p-2026-12-14"];
    assert_eq!(
        (week.gross, week.credit_applied, week.amount),
        (5200, 5200, 0)
    );
}

#[test]
fn a_declined_week_makes_no_orders_and_gives_its_credit_back() {
    let mut w = World::new();
    w.state.apply(&ScheduleEvent::DayCredited {
        plan_id: PlanId::from_static("old"),
        customer: "dan".into(),
        date: day(1),
        amount: 500,
        reason: protocol::schedule::WithdrawReason::PlanCancelled,
    });
    w.create("p", "dan", WEEKDAYS_SALAD, 2, 31, at(1, 10, 0));
    let e = scheduler::tick(&w.state, &w.menu, at(1, 10, 0), &w.policy);
    w.record(&e);
    let charge = &w.state.charges["plan-p-2026-11-30"];
    assert_eq!((charge.credit_applied, charge.amount), (500, 3200 - 500));
    assert_eq!(w.state.credit("dan"), 0);
    let e = scheduler::record_charge(&w.state, "plan-p-2026-11-30", false, "declined".into());
    w.record(&e);
    assert_eq!(
        w.state.credit("dan"),
        500,
        "the credit is the subscriber's again"
    );
    assert!(scheduler::tick(&w.state, &w.menu, at(1, 10, 1), &w.policy).is_empty());
    assert!(w.standing("p").is_empty(), "an unpaid week is not cooked");
    // A duplicate result changes nothing.
    assert!(
        scheduler::record_charge(&w.state, "plan-p-2026-11-30", true, "late".into()).is_empty()
    );
}

#[test]
fn orders_past_the_fridge_are_read_from_the_district() {
    let mut w = World::new();
    w.create("p", "pat", WEEKDAYS_SALAD, 2, 31, at(1, 10, 0));
    w.day_passes(at(1, 10, 0)); // Wed 2 to Fri 4 ordered.
                                // The kitchen places each meal on its eve.
    let place = |w: &World, d: u32| {
        let spec = KitchenEventSpec {
            stage: KitchenStage::PlacedInFridge,
            date: day(d),
            fridge_id: None,
            order_ids: None,
        };
        scheduler::kitchen_event(
            &w.state,
            &w.menu,
            &KitchenId::from_static("k-greens"),
            &spec,
            at(d - 1, 8, 0),
            &w.policy,
            &mut || "123456".into(),
        )
        .unwrap()
    };
    for d in [3, 4] {
        let e = place(&w, d);
        assert_eq!(e.len(), 3, "prepared, dispatched, available");
        w.record(&e);
    }
    // The district's book moves on without a schedule event: Thursday's is
    // picked up, Friday's goes unclaimed.
    w.menu.book.insert(
        OrderId::from_static("sub-p-2026-12-03"),
        OrderStatus::PickedUp,
    );
    w.menu.book.insert(
        OrderId::from_static("sub-p-2026-12-04"),
        OrderStatus::Unclaimed,
    );
    assert!(place(&w, 3).is_empty() && place(&w, 4).is_empty());
    assert_eq!(
        w.stage_on("p", day(4)),
        Some((MealId::from_static("m-bowl"), Stage::Available)),
        "an unclaimed meal still stands for its day"
    );
    assert!(w.day_passes(at(2, 9, 0)).is_empty(), "nothing made again");
    let prep = scheduler::prep::prep_report(
        &w.state,
        &w.menu,
        &KitchenId::from_static("k-greens"),
        day(4),
        &|m| m.to_string(),
        &[],
        &[],
    );
    assert_eq!(prep.total_subscription_units, 1);
    // Cancelling from Thursday (the earliest date) withdraws neither.
    let e = scheduler::cancel_plan(
        &w.state,
        &w.menu,
        &PlanId::from_static("p"),
        Some("pat"),
        None,
        at(2, 9, 0),
        &w.policy,
    )
    .unwrap();
    assert!(
        matches!(&e[..], [ScheduleEvent::PlanCancelled { from, .. }] if *from == day(3)),
        "{e:?}"
    );
}

#[test]
fn bad_plans_are_refused() {
    let w = World::new();
    let now = at(1, 10, 0);
    let spec = |d: &[(u8, &'static str)], fridge: &'static str, from: u32, to: u32| PlanSpec {
        fridge_id: FridgeId::from_static(fridge),
        days: days(d),
        start_date: day(from),
        end_date: day(to),
        payment_method: "tok_visa".into(),
    };
    let create = |s| {
        scheduler::create_plan(
            &w.state,
            &w.menu,
            PlanId::from_static("p"),
            "c".into(),
            s,
            now,
            &w.policy,
        )
    };
    assert!(matches!(
        create(spec(&[(1, "m-salad")], "f-lobby", 10, 9)),
        Err(ScheduleError::Spec(ValidationError::EndBeforeStart))
    ));
    assert!(matches!(
        create(spec(&[(8, "m-salad")], "f-lobby", 2, 9)),
        Err(ScheduleError::Spec(ValidationError::Weekday { weekday: 8 }))
    ));
    assert_eq!(
        create(spec(&[(1, "m-nope")], "f-lobby", 2, 9)),
        Err(ScheduleError::UnknownMeal(MealId::from_static("m-nope")))
    );
    assert_eq!(
        create(spec(&[(1, "m-salad")], "f-nope", 2, 9)),
        Err(ScheduleError::UnknownFridge(FridgeId::from_static(
            "f-nope"
        )))
    );
    let ok = create(spec(&[(1, "m-salad")], "f-lobby", 2, 9)).unwrap();
    // The same plan id again (a retried create under one Idempotency-Key):
    // the same plan is answered with nothing new, another one is refused.
    let mut w2 = World::new();
    w2.record(&ok);
    let again = |s| {
        scheduler::create_plan(
            &w2.state,
            &w2.menu,
            PlanId::from_static("p"),
            "c".into(),
            s,
            now,
            &w2.policy,
        )
    };
    assert_eq!(again(spec(&[(1, "m-salad")], "f-lobby", 2, 9)), Ok(vec![]));
    assert_eq!(
        again(spec(&[(2, "m-salad")], "f-lobby", 2, 9)),
        Err(ScheduleError::IdempotencyKeyReused)
    );
}

proptest! {
    /// Whatever the plans and the times the job runs at, running it twice at
    /// the same time equals running it once, and no plan day has two orders.
    #[test]
    fn materialising_twice_is_materialising_once(
        plans in prop::collection::vec((1u32..20, 0u32..12, prop::collection::btree_set(1u8..=7, 1..=5)), 1..4),
        runs in prop::collection::vec((1u32..=28, 0u32..24), 1..10),
        closed in prop::option::of(2u32..=28),
    ) {
        let mut w = World::new();
        if let Some(c) = closed {
            let e = scheduler::set_calendar_day(&w.state, &w.menu, day(c), CalendarDaySpec { working: false, kitchen_id: None, note: String::new() }, at(1, 0, 0), &w.policy).unwrap();
            w.record(&e);
        }
        for (i, (start, len, weekdays)) in plans.iter().enumerate() {
            let d: Vec<(u8, &'static str)> = weekdays.iter().map(|wd| (*wd, "m-salad")).collect();
            let spec = PlanSpec { fridge_id: FridgeId::from_static("f-lobby"), days: days(&d), start_date: day(2 + start), end_date: day((2 + start + len).min(31)), payment_method: "t".into() };
            if let Ok(e) = scheduler::create_plan(&w.state, &w.menu, PlanId::parse(format!("p{i}")).unwrap(), "c".into(), spec, at(1, 0, 0), &w.policy) {
                w.record(&e);
            }
        }
        let mut runs = runs;
        runs.sort();
        for (d, h) in runs {
            let now = at(d, h, 0);
            w.day_passes(now); // asserts a third run is empty
            let mut seen = std::collections::BTreeSet::new();
            for o in w.state.orders.values().filter(|o| o.stage(&w.menu) != Stage::Withdrawn) {
                prop_assert!(seen.insert((o.plan_id.clone(), o.date)), "two orders for one plan day");
                prop_assert!(w.state.calendar.is_working(o.date, Some(&o.kitchen_id)));
            }
        }
    }
}

#[test]
fn a_declined_week_is_retried_with_backoff_and_at_once_with_a_new_card() {
    let mut w = World::new();
    w.create("p", "eve", WEEKDAYS_SALAD, 2, 31, at(1, 10, 0));
    let attempts = |w: &World| {
        w.state
            .week_charges(
                &PlanId::from_static("p"),
                day(1) - chrono::Duration::days(1),
            )
            .map(|c| (c.charge_id.to_string(), c.status))
            .collect::<Vec<_>>()
    };
    let tick_and_decline = |w: &mut World, now| {
        let e = scheduler::tick(&w.state, &w.menu, now, &w.policy);
        w.record(&e);
        let pending: Vec<ChargeId> = w
            .state
            .charges
            .values()
            .filter(|c| c.status == ChargeStatus::Pending)
            .map(|c| c.charge_id.clone())
            .collect();
        for id in pending {
            let e = scheduler::record_charge(&w.state, &id, false, "card_declined".into());
            w.record(&e);
        }
    };
    tick_and_decline(&mut w, at(1, 10, 0));
    assert_eq!(
        attempts(&w),
        [("plan-p-2026-11-30".to_string(), ChargeStatus::Declined)]
    );
    // Not before the backoff: an hour after the first attempt.
    tick_and_decline(&mut w, at(1, 10, 59));
    assert_eq!(attempts(&w).len(), 1);
    tick_and_decline(&mut w, at(1, 11, 0));
    assert_eq!(
        attempts(&w).last(),
        Some(&("plan-p-2026-11-30-2".to_string(), ChargeStatus::Declined))
    );
    // The second retry waits six hours after the first retry.
    tick_and_decline(&mut w, at(1, 16, 59));
    assert_eq!(attempts(&w).len(), 2);
    tick_and_decline(&mut w, at(1, 17, 0));
    assert_eq!(attempts(&w).len(), 3);
    assert!(w.standing("p").is_empty(), "nothing made while unpaid");

    // A new card: retried at once, and the week's days are made.
    let change = PlanChange {
        payment_method: Some("tok_new".into()),
        ..PlanChange::default()
    };
    let e = scheduler::change_plan(
        &w.state,
        &w.menu,
        &PlanId::from_static("p"),
        Some("eve"),
        change,
        at(1, 17, 5),
        &w.policy,
    )
    .unwrap();
    assert!(
        matches!(&e[..], [ScheduleEvent::PaymentMethodChanged { .. }]),
        "{e:?}"
    );
    w.record(&e);
    w.day_passes(at(1, 17, 6));
    let all = attempts(&w);
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(
        all[3],
        ("plan-p-2026-11-30-4".to_string(), ChargeStatus::Paid)
    );
    assert_eq!(w.standing("p"), [day(2), day(3), day(4)]);
}
