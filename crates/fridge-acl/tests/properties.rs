//! Properties over generated inputs: delivery order does not change stock,
//! no input makes a parser panic, and what is signed verifies.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use fridge_acl::{
    coldline, frostline, sign, translate, verify_signature, Batch, DoorActor, DoorSession,
    FridgeCursor, FridgeFact, FridgeView, MealUnits, OpenOrder, Report, ReportBody, Scan, Secrets,
};
use proptest::prelude::*;
use protocol::{FridgeId, MealId, OrderId};

const MEALS: [&str; 3] = ["m-a", "m-b", "m-c"];
const T0: i64 = 1_741_089_600;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(T0 + secs, 0)
        .single()
        .expect("valid time")
}

fn meal_units(max: u32) -> impl Strategy<Value = BTreeMap<MealId, u32>> {
    proptest::collection::btree_map(
        proptest::sample::select(MEALS.to_vec()).prop_map(MealId::from_static),
        1..=max,
        0..=3,
    )
}

fn body() -> impl Strategy<Value = ReportBody> {
    let who = prop_oneof![
        Just(DoorActor::Unknown),
        Just(DoorActor::Staff("B-1".into())),
        Just(DoorActor::PickupCode("111111".into())),
        Just(DoorActor::PickupCode("222222".into())),
        Just(DoorActor::PickupCode("999999".into())),
    ];
    prop_oneof![
        meal_units(6).prop_map(|counts| ReportBody::Scan(Scan {
            counts,
            expired: BTreeMap::new()
        })),
        (who, meal_units(3), meal_units(4))
            .prop_filter("a door session moves something", |(_, t, a)| {
                !t.is_empty() || !a.is_empty()
            })
            .prop_map(|(who, taken, added)| ReportBody::Door(DoorSession { who, taken, added })),
        (2_000i32..9_000).prop_map(|milli_c| ReportBody::Temperature { milli_c }),
    ]
}

/// The node, reduced to what the facts touch.
#[derive(Debug, Clone)]
struct Node {
    view: FridgeView,
    cursor: FridgeCursor,
}

impl Node {
    fn new(on_hand: BTreeMap<MealId, u32>) -> Self {
        let orders = vec![
            OpenOrder {
                order_id: OrderId::from_static("o-1"),
                pickup_code: Some("111111".into()),
                items: vec![MealUnits {
                    meal_id: MealId::from_static("m-a"),
                    units: 1,
                }],
            },
            OpenOrder {
                order_id: OrderId::from_static("o-2"),
                pickup_code: Some("222222".into()),
                items: vec![
                    MealUnits {
                        meal_id: MealId::from_static("m-b"),
                        units: 2,
                    },
                    MealUnits {
                        meal_id: MealId::from_static("m-c"),
                        units: 1,
                    },
                ],
            },
        ];
        let mut reserved = BTreeMap::new();
        for o in &orders {
            for i in &o.items {
                *reserved.entry(i.meal_id.clone()).or_default() += i.units;
            }
        }
        Node {
            view: FridgeView {
                on_hand,
                reserved,
                open_orders: orders,
                ..FridgeView::default()
            },
            cursor: FridgeCursor::default(),
        }
    }

    /// Uploads a batch; returns (applied, duplicate, stale).
    fn upload(&mut self, reports: Vec<Report>, now: i64) -> (u32, u32, u32) {
        let batch = Batch {
            fridge_id: FridgeId::from_static("f-1"),
            sent_at: t(now),
            reports,
        };
        let out = translate(&self.cursor, &self.view, &batch, t(now));
        for fact in &out.facts {
            self.apply(fact);
        }
        self.cursor = out.cursor;
        (
            out.outcome.applied,
            out.outcome.duplicate,
            out.outcome.stale,
        )
    }

    /// What the node's evolve does with each fact that touches stock.
    fn apply(&mut self, fact: &FridgeFact) {
        match fact {
            FridgeFact::StockCounted {
                meal_id, on_hand, ..
            } => {
                self.view.on_hand.insert(meal_id.clone(), *on_hand);
            }
            FridgeFact::PickedUp { order_id, .. } => {
                let Some(pos) = self
                    .view
                    .open_orders
                    .iter()
                    .position(|o| &o.order_id == order_id)
                else {
                    return;
                };
                let order = self.view.open_orders.remove(pos);
                for i in order.items {
                    if let Some(n) = self.view.on_hand.get_mut(&i.meal_id) {
                        *n = n.saturating_sub(i.units);
                    }
                    if let Some(n) = self.view.reserved.get_mut(&i.meal_id) {
                        *n = n.saturating_sub(i.units);
                    }
                }
            }
            _ => {}
        }
    }

    fn stock(&self) -> BTreeMap<&'static str, u32> {
        MEALS
            .iter()
            .map(|m| (*m, self.view.on_hand.get(*m).copied().unwrap_or(0)))
            .collect()
    }
}

/// The rule itself, with no cursor: the newest scan (or the node's count
/// when there is none) plus every door session numbered after it, clamped.
fn specified_stock(
    initial: &BTreeMap<MealId, u32>,
    reports: &[Report],
) -> BTreeMap<&'static str, u32> {
    let last_scan = reports
        .iter()
        .filter_map(|r| match &r.body {
            ReportBody::Scan(s) => Some((r.seq, s)),
            _ => None,
        })
        .max_by_key(|(seq, _)| *seq);
    let (from, base) = match last_scan {
        Some((seq, s)) => (seq, &s.counts),
        None => (0, initial),
    };
    MEALS
        .iter()
        .map(|m| {
            let mut n = i64::from(base.get(*m).copied().unwrap_or(0));
            for r in reports.iter().filter(|r| r.seq > from) {
                if let ReportBody::Door(d) = &r.body {
                    n += i64::from(d.added.get(*m).copied().unwrap_or(0));
                    n -= i64::from(d.taken.get(*m).copied().unwrap_or(0));
                }
            }
            (*m, u32::try_from(n.max(0)).unwrap_or(0))
        })
        .collect()
}

fn scenario() -> impl Strategy<Value = (BTreeMap<MealId, u32>, Vec<Report>, Vec<usize>, Vec<usize>)>
{
    (meal_units(5), proptest::collection::vec(body(), 1..40)).prop_flat_map(|(initial, bodies)| {
        let n = bodies.len();
        let reports: Vec<Report> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Report {
                seq: i as u64 + 1,
                at: t(i as i64),
                body,
            })
            .collect();
        // Every report at least once, some several times, in any order.
        let deliveries = proptest::collection::vec(0..n, 0..n).prop_flat_map(move |extra| {
            let mut all: Vec<usize> = (0..n).collect();
            all.extend(extra);
            Just(all).prop_shuffle()
        });
        let cuts = proptest::collection::vec(1usize..8, 1..20);
        (Just(initial), Just(reports), deliveries, cuts)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        // PROPTEST_CASES soaks it longer.
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn any_delivery_order_gives_the_stock_of_sequence_order(
        (initial, reports, deliveries, cuts) in scenario()
    ) {
        let spec = specified_stock(&initial, &reports);

        let mut in_order = Node::new(initial.clone());
        for (i, r) in reports.iter().enumerate() {
            in_order.upload(vec![r.clone()], 1_000 + i as i64);
        }
        prop_assert_eq!(&in_order.stock(), &spec);

        let mut shuffled = Node::new(initial);
        let mut rest = deliveries.as_slice();
        let (mut applied, mut duplicate, mut stale) = (0, 0, 0);
        let mut now = 1_000;
        for size in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now_batch, later) = rest.split_at((*size).min(rest.len()));
            rest = later;
            now += 1;
            let batch = now_batch.iter().map(|i| reports[*i].clone()).collect();
            let (a, d, s) = shuffled.upload(batch, now);
            applied += a;
            duplicate += d;
            stale += s;
        }
        prop_assert_eq!(&shuffled.stock(), &spec);
        prop_assert_eq!(shuffled.view.open_orders.len(), in_order.view.open_orders.len());
        prop_assert_eq!(applied + stale, reports.len() as u32);
        prop_assert_eq!(duplicate as usize, deliveries.len() - reports.len());
        prop_assert!(shuffled.cursor.sequence.missing().is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = frostline::parse(&bytes);
        let _ = coldline::parse(&bytes);
    }

    #[test]
    fn near_miss_coldline_never_panics(
        lines in proptest::collection::vec(
            "[HSDTX]?\\|[-+0-9]{0,21}\\|[-0-9]{0,21}(\\|[PBU]?:?[a-z0-9:,|-]{0,40}){0,4}",
            0..20,
        )
    ) {
        let text = format!("H|f-1|{T0}\n{}", lines.join("\n"));
        let _ = coldline::parse(text.as_bytes());
    }

    #[test]
    fn near_miss_frostline_never_panics(
        seq in prop_oneof![Just("1".to_string()), "-?[0-9]{1,25}(\\.[0-9])?".prop_map(String::from)],
        kind in "(scan|door|temp|x)",
        field in "(counts|items|who|code|badge|taken|added|celsius|zz)",
        value in prop_oneof![
            Just("{}".to_string()),
            Just("[]".to_string()),
            "-?[0-9]{1,30}(\\.[0-9]{0,5})?(e[0-9]{1,4})?".prop_map(String::from),
            "\\{\"[a-z-]{0,8}\":-?[0-9]{1,22}\\}".prop_map(String::from),
            "\"[ -~]{0,40}\"".prop_map(String::from),
        ],
    ) {
        let text = format!(
            r#"{{"fridge_id":"f-1","batch_ts":"2025-03-04T12:00:00Z","reports":[{{"seq":{seq},"at":"2025-03-04T12:00:00Z","kind":"{kind}","{field}":{value}}}]}}"#
        );
        let _ = frostline::parse(text.as_bytes());
    }

    #[test]
    fn what_is_signed_verifies(
        secret in proptest::collection::vec(any::<u8>(), 1..80),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        skew in -300i64..=300,
    ) {
        let sig = sign(&secret, T0, &body);
        let ts = T0.to_string();
        prop_assert!(verify_signature(&Secrets::new(&secret), &body, &ts, &sig, t(skew)).is_ok());
        let mut other = body.clone();
        other.push(b'x');
        prop_assert!(verify_signature(&Secrets::new(&secret), &other, &ts, &sig, t(skew)).is_err());
    }
}
