//! The district's side of bonus points: the rules its customers earn and
//! spend by, and the operations its orders owe the global ledger (an
//! outbox, settled by `LoyaltyApplied`).
//!
//! The ledger itself (one account per customer, in a JetStream KV record,
//! the `loyalty` crate's rules) is global; the district only says what its
//! orders did. [`follow`] reads each order event after its own handler ran
//! and queues what it means for points:
//! - bought (`OrderPurchased`): spend what the order's hold reserved
//!   (`Commit`), and earn by the rules (`Earn`; app orders only: a POS
//!   till is nobody's account);
//! - not bought (cancelled in its grace window, refused): drop the hold
//!   (`Release`);
//! - refunded after it was bought: the spent points come back
//!   (`ReturnSpent`) and the earned ones go (`ReverseEarn`);
//! - bought with someone's share code (`OrderReferred`): the buyer is
//!   referred and the code's owner rewarded (once per payment method);
//! - a buyer's first app purchase here registers their share code;
//! - an order with a coupon whose uses count fleet-wide
//!   (`fleet_max_uses`) commits its use when bought and releases it when
//!   not.
//!
//! Op ids are `{kind}-{district}/{order}`: deterministic, so a replayed log
//! or a retried apply is recognised by the account, which applies each id
//! once. The node's loyalty task applies what is due and records
//! `LoyaltyApplied`; with NATS down the ops simply wait here (in the log),
//! which is how earns queue while spends are refused (`503`).

use chrono::Duration;
use imbl::{HashSet, OrdMap};
use loyalty::LoyaltyOp;
use protocol::orders::{Channel, OrderId};
use protocol::promotions::LoyaltyRules;
use protocol::Event;
use serde::{Deserialize, Serialize};

use crate::{DistrictState, Recorded};

/// What is owed to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerOp {
    /// A change to `DueOp::customer`'s account.
    Account(LoyaltyOp),
    /// Register `DueOp::customer`'s share code (on a first purchase here).
    ShareCode,
    /// A change to a coupon's fleet-wide uses (`fleet_max_uses`).
    Coupon {
        code: protocol::CouponCode,
        op: loyalty::coupon::CouponOp,
    },
}

/// An operation owed to the ledger for one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueOp {
    pub customer: String,
    pub op: LedgerOp,
}

/// What the ledger was told about one order, and who referred it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct OrderPoints {
    /// Bought (a later cancel is a refund, not a release).
    bought: bool,
    committed: bool,
    earned: i64,
    referrer: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loyalty {
    rules: Option<LoyaltyRules>,
    due: OrdMap<String, DueOp>,
    /// An `OrdMap`: a HAMT of one entry per order kept its 2 KiB leaves
    /// ~5 entries full (~450 bytes per order in memory).
    orders: OrdMap<OrderId, OrderPoints>,
    /// Customers whose share code this district has asked to register.
    shared: HashSet<String>,
}

impl Loyalty {
    pub fn rules(&self) -> Option<&LoyaltyRules> {
        self.rules.as_ref()
    }

    /// Operations not yet applied by the ledger, by op id.
    pub fn due(&self) -> &OrdMap<String, DueOp> {
        &self.due
    }

    /// Whether the ledger was told something about this order (kept for a
    /// later refund's reversal, until the order is archived).
    pub fn knows_order(&self, order_id: &str) -> bool {
        self.orders.contains_key(order_id)
    }
}

/// The ids of the orders with an operation still owed to the ledger,
/// which archiving must wait for. Op ids are `{kind}-{district}/{order}`
/// (order ids have no `/`); an op id of another shape only names
/// something that is no order, which costs nothing here.
pub(crate) fn orders_owed(state: &DistrictState) -> std::collections::HashSet<&str> {
    state
        .loyalty
        .due
        .keys()
        .filter_map(|op_id| op_id.rsplit_once('/').map(|(_, order)| order))
        .collect()
}

/// The ledger's name for an order: `{district}/{order}`.
pub fn order_key(district: &str, order_id: &str) -> String {
    format!("{district}/{order_id}")
}

fn owe(state: &mut DistrictState, kind: &str, key: &str, customer: &str, op: LoyaltyOp) {
    let due = DueOp {
        customer: customer.to_string(),
        op: LedgerOp::Account(op),
    };
    state.loyalty.due.insert(format!("{kind}-{key}"), due);
}

fn owe_coupon(
    state: &mut DistrictState,
    kind: &str,
    key: &str,
    code: protocol::CouponCode,
    op: loyalty::coupon::CouponOp,
) {
    let due = DueOp {
        customer: String::new(),
        op: LedgerOp::Coupon { code, op },
    };
    state.loyalty.due.insert(format!("{kind}-{key}"), due);
}

/// The facts of an order `follow` needs (it runs for every order event,
/// so only these are copied).
struct Facts {
    customer: String,
    channel: Channel,
    spent: i64,
    charged: i64,
    method: u64,
    /// The coupon the order used, if its uses count fleet-wide.
    fleet_coupon: Option<protocol::CouponCode>,
}

/// Queues the ledger operations an order event implies (see the module
/// docs). Runs after the event's own handler, so the order's status is
/// already the new one.
pub(crate) fn follow(state: &mut DistrictState, event: &Event, rec: Recorded) {
    if let Event::OrdersArchived { order_ids } = event {
        // Archiving waits for every op an order owes (`orders_owed`), so
        // only what the ledger was told about the order goes.
        for id in order_ids {
            state.loyalty.orders.remove(id);
        }
        return;
    }
    let order_id = match event {
        Event::OrderPurchased { order_id, .. }
        | Event::OrderCancelled { order_id }
        | Event::OrderPurchaseRefused { order_id, .. }
        | Event::OrderRefunded { order_id, .. } => order_id,
        _ => return,
    };
    let Some(facts) = state.orders.get(order_id).map(|o| Facts {
        customer: o.customer.clone(),
        channel: o.channel,
        spent: o
            .price()
            .and_then(|p| p.points.as_ref())
            .map_or(0, |p| p.points),
        charged: o.charged().amount_minor,
        method: loyalty::method_hash(&o.payment_method),
        fleet_coupon: o
            .price()
            .and_then(|p| p.coupon.as_ref())
            .map(|c| c.code.clone())
            .filter(|code| {
                state
                    .promotions
                    .coupons()
                    .get(code)
                    .is_some_and(|c| c.spec.fleet_max_uses.is_some())
            }),
    }) else {
        return;
    };
    let key = order_key(rec.district_id, order_id);
    let seen = state
        .loyalty
        .orders
        .get(order_id)
        .cloned()
        .unwrap_or_default();
    match event {
        Event::OrderPurchased { .. } => {
            let now = purchased(state, &key, &facts, &seen, rec);
            if now != seen {
                let id = state.orders.shared_id(order_id);
                state.loyalty.orders.insert(id, now);
            }
        }
        Event::OrderCancelled { .. } | Event::OrderPurchaseRefused { .. } if !seen.bought => {
            if facts.spent > 0 && !seen.committed {
                let op = LoyaltyOp::Release { order: key.clone() };
                owe(state, "release", &key, &facts.customer, op);
            }
            if let Some(code) = facts.fleet_coupon.clone() {
                let op = loyalty::coupon::CouponOp::Release { order: key.clone() };
                owe_coupon(state, "coupon-release", &key, code, op);
            }
        }
        Event::OrderRefunded { .. } => {
            if seen.committed {
                let op = LoyaltyOp::ReturnSpent { order: key.clone() };
                owe(state, "return", &key, &facts.customer, op);
            }
            if seen.earned > 0 {
                let op = LoyaltyOp::ReverseEarn { order: key.clone() };
                owe(state, "reverse", &key, &facts.customer, op);
            }
            // The share code's owner was rewarded for this purchase (or the
            // ledger refused the reward: then this changes nothing there).
            if let Some(owner) = seen.referrer.as_ref().filter(|_| seen.bought) {
                let op = LoyaltyOp::ReverseEarn { order: key.clone() };
                owe(state, "reverse-reward", &key, owner, op);
            }
        }
        _ => {}
    }
}

/// A purchase: commit the spend; for an app order, earn, register the
/// buyer's share code and settle a referral. Returns what the ledger was
/// told about the order.
fn purchased(
    state: &mut DistrictState,
    key: &str,
    facts: &Facts,
    seen: &OrderPoints,
    rec: Recorded,
) -> OrderPoints {
    let mut now = seen.clone();
    now.bought = true;
    let customer = facts.customer.as_str();
    if let Some(code) = facts.fleet_coupon.clone() {
        let op = loyalty::coupon::CouponOp::Commit {
            order: key.to_string(),
        };
        owe_coupon(state, "coupon-commit", key, code, op);
    }
    if facts.spent > 0 {
        let op = LoyaltyOp::Commit {
            order: key.to_string(),
            points: facts.spent,
        };
        owe(state, "commit", key, customer, op);
        now.committed = true;
    }
    if facts.channel != Channel::App {
        return now; // A till is nobody's account.
    }
    let Some(rules) = state.loyalty.rules else {
        return now;
    };
    let expires_at = rec.at + Duration::days(i64::from(rules.expire_after_days));
    let earned = rules.earned(facts.charged);
    if earned > 0 {
        let op = LoyaltyOp::Earn {
            order: key.to_string(),
            points: earned,
            expires_at,
        };
        owe(state, "earn", key, customer, op);
        now.earned = earned;
    }
    if let Some(owner) = seen.referrer.clone() {
        let referred = LoyaltyOp::Referred {
            order: key.to_string(),
            owner: owner.clone(),
        };
        owe(state, "referred", key, customer, referred);
        let reward = LoyaltyOp::ReferralReward {
            order: key.to_string(),
            customer: customer.to_string(),
            method: facts.method,
            points: i64::from(rules.referral_reward_points),
            expires_at,
        };
        owe(state, "reward", key, &owner, reward);
    }
    if !state.loyalty.shared.contains(customer) {
        state.loyalty.shared.insert(customer.to_string());
        let due = DueOp {
            customer: customer.to_string(),
            op: LedgerOp::ShareCode,
        };
        let id = format!("share-{}", loyalty::share_code(customer));
        state.loyalty.due.insert(id, due);
    }
    now
}

/// `OrderReferred`: remembered until the order is bought.
pub(crate) fn referred_by(state: &mut DistrictState, order_id: &OrderId, owner: &str) {
    let mut entry = state
        .loyalty
        .orders
        .get(order_id)
        .cloned()
        .unwrap_or_default();
    entry.referrer = Some(owner.to_string());
    let id = state.orders.shared_id(order_id);
    state.loyalty.orders.insert(id, entry);
}

pub(crate) fn define_rules(state: &mut DistrictState, rules: LoyaltyRules) {
    state.loyalty.rules = Some(rules);
}

pub(crate) fn applied(state: &mut DistrictState, op_ids: &[String]) {
    for id in op_ids {
        state.loyalty.due.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given::{state, t0};
    use protocol::promotions::{LinePrice, PointsSpend, PriceSplit, PromotionEvent};
    use protocol::MealId;

    const RULES: LoyaltyRules = LoyaltyRules {
        points_per_major_unit: 1,
        minor_per_major: 100,
        minor_per_point: 1,
        expire_after_days: 30,
        referral_reward_points: 100,
    };

    fn placed(channel: Channel) -> Vec<Event> {
        vec![
            Event::Promotion(PromotionEvent::LoyaltyRulesDefined { rules: RULES }),
            crate::given::bowl_placed("o1", "ann", channel),
        ]
    }

    /// `placed` plus a price split spending 250 points on it.
    fn placed_spending(channel: Channel) -> Vec<Event> {
        let mut split = PriceSplit::list(vec![LinePrice {
            meal_id: MealId::from_static("m1"),
            qty: 1,
            list_minor: 1_250,
            discount_minor: 0,
        }]);
        split.points = Some(PointsSpend {
            points: 250,
            value_minor: 250,
        });
        split.charged_minor = 1_000;
        let mut events = placed(channel);
        events.push(Event::Promotion(PromotionEvent::OrderPriced {
            order_id: OrderId::from_static("o1"),
            local_date: t0().date_naive(),
            split: std::sync::Arc::new(split),
        }));
        events
    }

    fn purchased() -> Event {
        Event::OrderPurchased {
            order_id: OrderId::from_static("o1"),
            pickup_code: "123456".into(),
            pickup_deadline: t0(),
        }
    }

    fn due_ids(s: &DistrictState) -> Vec<&str> {
        s.loyalty().due().keys().map(String::as_str).collect()
    }

    #[test]
    fn a_purchase_commits_the_spend_and_earns_on_what_the_card_paid() {
        let mut events = placed_spending(Channel::App);
        events.push(purchased());
        let s = state(events);
        let share = format!("share-{}", loyalty::share_code("ann"));
        assert_eq!(due_ids(&s), ["commit-d/o1", "earn-d/o1", share.as_str()]);
        let earn = &s.loyalty().due()["earn-d/o1"];
        assert_eq!(earn.customer, "ann");
        assert!(
            matches!(
                earn.op,
                LedgerOp::Account(LoyaltyOp::Earn { points: 10, .. })
            ),
            "10.00 paid: {:?}",
            earn.op
        );
        assert!(matches!(
            s.loyalty().due()["commit-d/o1"].op,
            LedgerOp::Account(LoyaltyOp::Commit { points: 250, .. })
        ));
    }

    /// `placed_spending` as today's log records it: the price inside the
    /// `OrderPlaced` (log schema 2) instead of an `OrderPriced` after it.
    fn placed_spending_v2(channel: Channel) -> Vec<Event> {
        let mut events = placed_spending(channel);
        let Some(Event::Promotion(PromotionEvent::OrderPriced {
            local_date, split, ..
        })) = events.pop()
        else {
            unreachable!("placed_spending ends with its OrderPriced")
        };
        if let Some(Event::OrderPlaced { price, .. }) = events.last_mut() {
            *price = Some(protocol::promotions::OrderPrice { local_date, split });
        }
        events
    }

    #[test]
    fn a_price_in_the_placement_builds_what_a_version_1_order_priced_built() {
        for then in [
            purchased(),
            Event::OrderCancelled {
                order_id: OrderId::from_static("o1"),
            },
        ] {
            let mut v1 = placed_spending(Channel::App);
            let mut v2 = placed_spending_v2(Channel::App);
            assert_eq!(v2.len() + 1, v1.len(), "one record fewer");
            v1.push(then.clone());
            v2.push(then);
            let (v1, v2) = (state(v1), state(v2));
            assert!(v2.orders().iter().all(|o| o.price().is_some()));
            assert_eq!(v1.orders(), v2.orders());
            assert_eq!(v1.promotions(), v2.promotions());
            assert_eq!(v1.loyalty(), v2.loyalty());
        }
    }

    #[test]
    fn a_purchase_is_remembered_under_the_books_copy_of_the_order_id() {
        let mut events = placed(Channel::App);
        events.push(purchased()); // with an OrderId of its own
        let s = state(events);

        let (kept, _) = s.loyalty.orders.iter().next().unwrap();
        let booked = s.orders().id("o1").unwrap();
        assert_eq!(kept.as_str().as_ptr(), booked.as_str().as_ptr());
    }

    #[test]
    fn a_till_earns_nobody_points() {
        let mut events = placed(Channel::Pos);
        events.push(purchased());
        assert!(state(events).loyalty().due().is_empty());
    }

    #[test]
    fn a_cancel_in_the_grace_window_releases_the_hold() {
        let mut events = placed_spending(Channel::App);
        events.push(Event::OrderCancelled {
            order_id: OrderId::from_static("o1"),
        });
        assert_eq!(due_ids(&state(events)), ["release-d/o1"]);
    }

    #[test]
    fn a_refund_returns_the_spend_and_reverses_the_earn() {
        let mut events = placed_spending(Channel::App);
        events.push(purchased());
        events.push(Event::Promotion(PromotionEvent::LoyaltyApplied {
            op_ids: vec![
                "commit-d/o1".into(),
                "earn-d/o1".into(),
                format!("share-{}", loyalty::share_code("ann")),
            ],
        }));
        events.push(Event::OrderCancelled {
            order_id: OrderId::from_static("o1"),
        });
        events.push(Event::OrderRefunded {
            order_id: OrderId::from_static("o1"),
            reference: "re_1".into(),
        });
        assert_eq!(due_ids(&state(events)), ["return-d/o1", "reverse-d/o1"]);
    }

    #[test]
    fn a_purchase_with_a_share_code_refers_the_buyer_and_rewards_the_owner() {
        let mut events = placed(Channel::App);
        events.push(Event::Promotion(PromotionEvent::OrderReferred {
            order_id: OrderId::from_static("o1"),
            owner: "bob".into(),
        }));
        events.push(purchased());
        let s = state(events);
        let referred = &s.loyalty().due()["referred-d/o1"];
        assert_eq!(referred.customer, "ann");
        let reward = &s.loyalty().due()["reward-d/o1"];
        assert_eq!(reward.customer, "bob");
        assert!(
            matches!(
                &reward.op,
                LedgerOp::Account(LoyaltyOp::ReferralReward { points: 100, customer, .. }) if customer == "ann"
            ),
            "{:?}",
            reward.op
        );
    }

    #[test]
    fn a_refund_of_a_referred_purchase_takes_the_owners_reward_back() {
        let mut events = placed(Channel::App);
        events.push(Event::Promotion(PromotionEvent::OrderReferred {
            order_id: OrderId::from_static("o1"),
            owner: "bob".into(),
        }));
        events.push(purchased());
        events.push(Event::Promotion(PromotionEvent::LoyaltyApplied {
            op_ids: s_due(&state(events.clone())),
        }));
        events.push(Event::OrderCancelled {
            order_id: OrderId::from_static("o1"),
        });
        events.push(Event::OrderRefunded {
            order_id: OrderId::from_static("o1"),
            reference: "re_1".into(),
        });
        let s = state(events);
        assert_eq!(due_ids(&s), ["reverse-d/o1", "reverse-reward-d/o1"]);
        let back = &s.loyalty().due()["reverse-reward-d/o1"];
        assert_eq!(back.customer, "bob");
        assert!(
            matches!(&back.op, LedgerOp::Account(LoyaltyOp::ReverseEarn { order }) if order == "d/o1"),
            "{:?}",
            back.op
        );
    }

    #[test]
    fn a_referred_order_cancelled_before_it_was_bought_owes_the_owner_nothing() {
        let mut events = placed(Channel::App);
        events.push(Event::Promotion(PromotionEvent::OrderReferred {
            order_id: OrderId::from_static("o1"),
            owner: "bob".into(),
        }));
        events.push(Event::OrderCancelled {
            order_id: OrderId::from_static("o1"),
        });
        assert!(state(events).loyalty().due().is_empty());
    }

    fn s_due(s: &DistrictState) -> Vec<String> {
        due_ids(s).into_iter().map(str::to_string).collect()
    }

    #[test]
    fn an_archived_order_leaves_the_ledgers_memory_once_its_ops_are_applied() {
        let mut events = placed(Channel::App);
        events.push(purchased());
        let s = state(events.clone());
        assert!(s.loyalty().knows_order("o1"));
        assert!(
            crate::loyalty::orders_owed(&s).contains("o1"),
            "its commit and earn are owed: {:?}",
            due_ids(&s)
        );
        events.push(Event::Promotion(PromotionEvent::LoyaltyApplied {
            op_ids: s_due(&s),
        }));
        events.push(Event::OrderPickedUp {
            order_id: OrderId::from_static("o1"),
        });
        events.push(Event::OrdersArchived {
            order_ids: vec![OrderId::from_static("o1")],
        });
        let s = state(events);
        assert!(s.orders().get("o1").is_none());
        assert!(crate::loyalty::orders_owed(&s).is_empty());
        assert!(!s.loyalty().knows_order("o1"));
    }
}
