//! Issue 12, share codes and two-level referrals: every app purchase shows
//! its buyer's share code; a purchase made with someone's code refers the
//! buyer and rewards the owner; the owner sees who bought with their code
//! and who bought with those buyers' codes (two levels); a customer cannot
//! use their own code, be referred twice, or farm a code with one card.
//! Real nats-server, payments service and node.

use std::time::Duration;

use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const SALAD: &str = "m-greek-salad";
/// Share codes and rewards reach the ledger off the request path.
const LEDGER_DEADLINE: Duration = Duration::from_secs(20);

struct Shop {
    _nats: Nats,
    _payments: Payments,
    node: Node,
}

impl Shop {
    async fn start() -> Shop {
        let nats = Nats::start().await;
        let payments = Payments::start(&nats, &[]).await;
        let node = Node::start_with_nats(&nats, &[]).await;
        let r = node.admin().set_stock(FRIDGE, &[(SALAD, 20)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        Shop {
            _nats: nats,
            _payments: payments,
            node,
        }
    }

    async fn order(&self, who: &str, card: &str, share_code: Option<&str>) -> Resp {
        let mut body = json!({"fridge_id": FRIDGE, "items": [{"meal_id": SALAD, "qty": 1}],
                              "payment_method": card});
        if let Some(code) = share_code {
            body["share_code"] = json!(code);
        }
        self.node
            .as_role("customer", who)
            .order_body(body, None)
            .await
    }

    /// `who` buys (grace window over, paid); their share code, once the
    /// ledger has registered it.
    async fn buy(&self, who: &str, card: &str, share_code: Option<&str>) -> String {
        let r = self.order(who, card, share_code).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["order_id"].as_str().unwrap_or_default().to_string();
        self.node.advance_clock(25).await;
        let order = self
            .node
            .await_status(&id, "purchased", PAYMENT_DEADLINE)
            .await;
        let code = order["share_code"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            code.len(),
            10,
            "a bought app order shows its share code: {order}"
        );
        self.await_referrals(who, |v| v["share_code"] == code.as_str())
            .await;
        code
    }

    async fn await_referrals(&self, who: &str, done: impl Fn(&Value) -> bool) -> Value {
        let client = self.node.as_role("customer", who);
        client
            .await_get("/v1/me/referrals", LEDGER_DEADLINE, done)
            .await
    }
}

#[tokio::test]
async fn three_chained_purchases_show_two_levels_to_the_first_owner() {
    let shop = Shop::start().await;
    let ann = shop.buy("ann", "tok_ann", None).await;
    let bob = shop
        .buy("bob", "tok_bob", Some(&ann.to_ascii_lowercase()))
        .await;
    shop.buy("carol", "tok_carol", Some(&bob)).await;

    let view = shop
        .await_referrals("ann", |v| v["referrals"][0]["referrals"][0].is_object())
        .await;
    assert_eq!(view["people"], 1, "{view}");
    assert_eq!(view["referrals"][0]["customer"], "bo***", "{view}");
    assert_eq!(
        view["referrals"][0]["referrals"][0]["customer"], "ca***",
        "{view}"
    );
    assert!(
        view["referrals"][0]["referrals"][0]
            .get("referrals")
            .is_none(),
        "no deeper"
    );
    let bob_view = shop
        .await_referrals("bob", |v| v["referred_by"].is_object())
        .await;
    assert_eq!(bob_view["referred_by"]["customer"], "an***", "{bob_view}");

    // Ann's reward: 100 points for bob's purchase, beside her own 10.
    let points = shop
        .node
        .as_role("customer", "ann")
        .get("/v1/me/points")
        .await;
    assert_eq!(points.body["points"], 110, "{}", points.body);

    // The guards: own code, referred twice, one card farming ann's code.
    let refused = |r: &Resp, reason: &str| {
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "referral_refused", "{}", r.body);
        assert_eq!(r.body["error"]["reason"], reason, "{}", r.body);
    };
    let seq = shop.node.log_seq().await;
    refused(
        &shop.order("ann", "tok_ann", Some(&ann)).await,
        "self_referral",
    );
    refused(
        &shop.order("bob", "tok_bob", Some(&ann)).await,
        "already_referred",
    );
    refused(
        &shop.order("mallory", "tok_bob", Some(&ann)).await,
        "payment_method_used",
    );
    refused(
        &shop.order("dave", "tok_dave", Some("0000000000")).await,
        "unknown_code",
    );
    assert_eq!(shop.node.log_seq().await, seq, "refusals change nothing");
    let r = shop
        .node
        .as_role("pos", "till")
        .order_body(
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": SALAD, "qty": 1}],
                           "payment_method": "tok_visa", "share_code": ann}),
            None,
        )
        .await;
    assert_eq!(r.status, 422, "a till takes no share codes: {}", r.body);
}

/// Bob buys with ann's code and ann is rewarded; bob then cancels the paid
/// order (a refund): ann's reward goes with it, her own points stay, and
/// bob stays referred (a refund does not free him to be referred again).
#[tokio::test]
async fn a_refunded_purchase_takes_the_referral_reward_back() {
    let shop = Shop::start().await;
    let ann = shop.buy("ann", "tok_ann", None).await;
    let r = shop.order("bob", "tok_bob", Some(&ann)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bobs = r.body["order_id"].as_str().unwrap_or_default().to_string();
    shop.node.advance_clock(25).await;
    shop.node
        .await_status(&bobs, "purchased", PAYMENT_DEADLINE)
        .await;
    await_points(&shop.node, "ann", 110).await;

    let r = shop.node.as_role("customer", "bob").cancel(&bobs).await;
    assert_eq!(r.status, 200, "{}", r.body);
    shop.node
        .await_status(&bobs, "refunded", PAYMENT_DEADLINE)
        .await;
    let ann_points = await_points(&shop.node, "ann", 10).await;
    let last = ann_points["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&last["kind"], &last["points"]),
        (&json!("reversed"), &json!(-100)),
        "{ann_points}"
    );
    await_points(&shop.node, "bob", 0).await;
    let bob_view = shop
        .await_referrals("bob", |v| v["referred_by"].is_object())
        .await;
    assert_eq!(bob_view["referred_by"]["customer"], "an***", "{bob_view}");
}

/// Awaits `who`'s balance reaching `points`; returns the balance view.
async fn await_points(node: &Node, who: &str, points: i64) -> Value {
    let client = node.as_role("customer", who);
    client
        .await_get("/v1/me/points", LEDGER_DEADLINE, |v| v["points"] == points)
        .await
}
