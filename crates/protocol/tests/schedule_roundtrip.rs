//! Every schedule event survives the log codec and JSON unchanged.

use chrono::{NaiveDate, TimeZone, Utc};
use protocol::codec::{decode_log_record, encode_log_record};
use protocol::schedule::{ChargedDay, PlanDay, PlanTerms, ScheduleEvent, WithdrawReason};
use protocol::{
    ChargeId, DistrictId, Event, EventEnvelope, FridgeId, KitchenId, MealId, OrderId, PlanId,
};

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
}

fn all_schedule_events() -> Vec<ScheduleEvent> {
    let usd: protocol::money::Currency = "USD".to_string().try_into().unwrap();
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    let terms = PlanTerms {
        fridge_id: FridgeId::from_static("f-1"),
        days: vec![PlanDay {
            weekday: 3,
            meal_id: MealId::from_static("m-1"),
        }],
        paused: false,
    };
    vec![
        ScheduleEvent::PlanCreated {
            plan_id: PlanId::from_static("p"),
            customer: "alice".into(),
            start_date: date(),
            end_date: date(),
            terms: terms.clone(),
            currency: usd.clone(),
            payment_method: "tok_visa".into(),
        },
        ScheduleEvent::PlanChanged {
            plan_id: PlanId::from_static("p"),
            from: date(),
            terms,
            end_date: date(),
        },
        ScheduleEvent::PlanCancelled {
            plan_id: PlanId::from_static("p"),
            from: date(),
        },
        ScheduleEvent::CalendarDaySet {
            date: date(),
            kitchen_id: None,
            working: false,
            note: "holiday".into(),
        },
        ScheduleEvent::ChargeRequested {
            charge_id: ChargeId::from_static("plan-p-2026-11-30"),
            plan_id: PlanId::from_static("p"),
            customer: "alice".into(),
            period_start: date(),
            days: vec![ChargedDay {
                date: date(),
                amount: 1000,
            }],
            gross: 1000,
            credit_applied: -5,
            amount: 1005,
            currency: usd.clone(),
            payment_method: "tok_visa".into(),
            deadline: at,
        },
        ScheduleEvent::ChargeSettled {
            charge_id: ChargeId::from_static("plan-p-2026-11-30"),
            plan_id: PlanId::from_static("p"),
            approved: true,
            reference: "ref".into(),
        },
        ScheduleEvent::OrderScheduled {
            order_id: OrderId::from_static("sub-p-2026-12-02"),
            plan_id: PlanId::from_static("p"),
            customer: "alice".into(),
            date: date(),
            fridge_id: FridgeId::from_static("f-1"),
            kitchen_id: KitchenId::from_static("k-1"),
            meal_id: MealId::from_static("m-1"),
            meal_name: "Bowl".into(),
            price: 1000,
            currency: usd.clone(),
            debit: 0,
        },
        ScheduleEvent::OrderWithdrawn {
            order_id: OrderId::from_static("sub-p-2026-12-02"),
            plan_id: PlanId::from_static("p"),
            customer: "alice".into(),
            credit: 1000,
            reason: WithdrawReason::NonWorkingDay,
        },
        ScheduleEvent::DayCredited {
            plan_id: PlanId::from_static("p"),
            customer: "alice".into(),
            date: date(),
            amount: 1000,
            reason: WithdrawReason::NotDelivered,
        },
        ScheduleEvent::OrderPrepared {
            order_id: OrderId::from_static("o"),
        },
        ScheduleEvent::OrderDispatched {
            order_id: OrderId::from_static("o"),
        },
        ScheduleEvent::OrderAvailableForPicking {
            order_id: OrderId::from_static("o"),
            pickup_code: "123456".into(),
            pickup_deadline: at,
        },
        ScheduleEvent::PaymentMethodChanged {
            plan_id: PlanId::from_static("p"),
            payment_method: "tok_visa".into(),
        },
        ScheduleEvent::CreditRefundRequested {
            charge_id: ChargeId::for_period(&PlanId::from_static("p"), date()),
            plan_id: PlanId::from_static("p"),
            customer: "alice".into(),
            amount: 1000,
            currency: usd.clone(),
            payment_method: "tok_visa".into(),
            deadline: at,
        },
        ScheduleEvent::CreditRefundSettled {
            charge_id: ChargeId::for_period(&PlanId::from_static("p"), date()),
            plan_id: PlanId::from_static("p"),
            approved: true,
            reference: "ref".into(),
        },
        ScheduleEvent::PreorderPlaced {
            order_id: OrderId::from_static("o"),
            date: date(),
            kitchen_id: KitchenId::from_static("k-1"),
            cancel_until: at,
        },
        ScheduleEvent::PreorderScheduled {
            order_id: OrderId::from_static("o"),
            customer: "alice".into(),
            date: date(),
            fridge_id: FridgeId::from_static("f-1"),
            kitchen_id: KitchenId::from_static("k-1"),
            meal_id: MealId::from_static("m-1"),
            meal_name: "Bowl".into(),
            price: 1000,
            currency: usd.clone(),
        },
        ScheduleEvent::PreorderWithdrawn {
            order_id: OrderId::from_static("o"),
            customer: "alice".into(),
            reason: WithdrawReason::NotProduced,
        },
    ]
}

#[test]
fn schedule_events_roundtrip_through_the_log_codec_and_json() {
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    for (i, e) in all_schedule_events().into_iter().enumerate() {
        let event = Event::Schedule(e);
        let env = EventEnvelope {
            event_id: ulid::Ulid::from_parts(1_700_000_000_000, i as u128),
            seq: i as u64 + 1,
            stream_id: event.stream_id(),
            stream_version: 1,
            district_id: DistrictId::from_static("detroit-downtown"),
            recorded_at: at,
            valid_from: at,
            correlation_id: None,
            causation_id: None,
            schema_version: protocol::codec::LOG_SCHEMA_VERSION,
            event,
        };
        let bytes = encode_log_record(&env).unwrap();
        assert_eq!(decode_log_record(&bytes).unwrap(), env);
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(serde_json::from_str::<EventEnvelope>(&json).unwrap(), env);
    }
}

#[test]
fn scheduled_orders_share_the_order_stream() {
    let e = Event::Schedule(ScheduleEvent::OrderPrepared {
        order_id: OrderId::from_static("sub-p-2026-12-02"),
    });
    assert_eq!(e.stream_id(), "order-sub-p-2026-12-02");
    assert_eq!(e.kind(), "OrderPrepared");
}

/// `ScheduleEvent`s as postcard writes them since they were introduced; the
/// bytes pin the variant order (append-only) and the field order. The index
/// of `Event::Schedule` itself is pinned in `golden.rs`.
const GOLDEN_HEX: [&str; 18] = [
    "00017005616c6963650a323032362d31322d30320a323032362d31322d303203662d310103036d2d31000355534408746f6b5f76697361",
    "0101700a323032362d31322d303203662d310103036d2d31000a323032362d31322d3032",
    "0201700a323032362d31322d3032",
    "030a323032362d31322d3032000007686f6c69646179",
    "0411706c616e2d702d323032362d31312d3330017005616c6963650a323032362d31322d3032010a323032362d31322d3032d00fd00f09da0f0355534408746f6b5f7669736114323032362d31322d30315431323a30303a30305a",
    "0511706c616e2d702d323032362d31312d333001700103726566",
    "06107375622d702d323032362d31322d3032017005616c6963650a323032362d31322d303203662d31036b2d31036d2d3104426f776cd00f0355534400",
    "07107375622d702d323032362d31322d3032017005616c696365d00f02",
    "08017005616c6963650a323032362d31322d3032d00f03",
    "09016f",
    "0a016f",
    "0b016f0631323334353614323032362d31322d30315431323a30303a30305a",
    "0c017008746f6b5f76697361",
    "0d11706c616e2d702d323032362d31322d3032017005616c696365d00f0355534408746f6b5f7669736114323032362d31322d30315431323a30303a30305a",
    "0e11706c616e2d702d323032362d31322d303201700103726566",
    "0f016f0a323032362d31322d3032036b2d3114323032362d31322d30315431323a30303a30305a",
    "10016f05616c6963650a323032362d31322d303203662d31036b2d31036d2d3104426f776cd00f03555344",
    "11016f05616c69636504",
];

/// Postcard's index of each variant. Exhaustive on purpose (no `_` arm): a
/// new variant does not compile until it is listed here, and then the test
/// below wants a sample and a golden for it.
fn variant_index(event: &ScheduleEvent) -> usize {
    match event {
        ScheduleEvent::PlanCreated { .. } => 0,
        ScheduleEvent::PlanChanged { .. } => 1,
        ScheduleEvent::PlanCancelled { .. } => 2,
        ScheduleEvent::CalendarDaySet { .. } => 3,
        ScheduleEvent::ChargeRequested { .. } => 4,
        ScheduleEvent::ChargeSettled { .. } => 5,
        ScheduleEvent::OrderScheduled { .. } => 6,
        ScheduleEvent::OrderWithdrawn { .. } => 7,
        ScheduleEvent::DayCredited { .. } => 8,
        ScheduleEvent::OrderPrepared { .. } => 9,
        ScheduleEvent::OrderDispatched { .. } => 10,
        ScheduleEvent::OrderAvailableForPicking { .. } => 11,
        ScheduleEvent::PaymentMethodChanged { .. } => 12,
        ScheduleEvent::CreditRefundRequested { .. } => 13,
        ScheduleEvent::CreditRefundSettled { .. } => 14,
        ScheduleEvent::PreorderPlaced { .. } => 15,
        ScheduleEvent::PreorderScheduled { .. } => 16,
        ScheduleEvent::PreorderWithdrawn { .. } => 17,
    }
}

#[test]
fn schedule_event_bytes_are_stable() {
    let hex = |bytes: Vec<u8>| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let events = all_schedule_events();
    let last = events.last().map(variant_index).unwrap();
    assert_eq!(events.len(), last + 1, "one sample per variant");
    assert_eq!(GOLDEN_HEX.len(), events.len(), "one golden per variant");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(variant_index(event), i, "{event:?} is not at its index");
    }
    for (event, golden) in events.into_iter().zip(GOLDEN_HEX) {
        assert_eq!(
            hex(postcard::to_stdvec(&event).unwrap()),
            golden,
            "{event:?}: variant or field order changed; append instead"
        );
    }
}
