//! Settling a round and checking DESIGN.md §6 on the quiet system.
//!
//! Quiet means: the node owes payments nothing (`outbox_pending` 0), every
//! JetStream consumer has delivered and seen acknowledged every message,
//! and no order of the round is still held, paying or awaiting a refund.
//! Then, per order of the round, the node's order against the payments
//! ledger; over all rounds, stock levels against the orders holding them
//! and the ledger's totals against the charges seen per order.

use std::collections::HashMap;

use futures::StreamExt;
use serde_json::Value;

use super::load::LoadOutcome;
use super::{Chaos, GRACE_WINDOW_SECS, PAYMENT_TIMEOUT_SECS, SETTLE_DEADLINE, SETTLE_STEP};
use crate::Client;

/// Requests in flight while reading orders and ledger entries.
const READ_CONCURRENCY: usize = 32;
/// Orders of earlier rounds re-read each round (a restart must not lose
/// them either; stock and ledger totals cover the rest).
const OLDER_SAMPLE: usize = 200;

/// Violations found in a round (all should be 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Acknowledged orders the node no longer has (or has changed).
    pub lost: u64,
    /// Units promised beyond those counted in, per fridge and meal.
    pub oversold: u64,
    /// |reserved − units of open orders| + |on hand − counted|.
    pub stock_mismatch: u64,
    /// Captures beyond one per order, refunds beyond one.
    pub double_charges: u64,
    /// Purchases confirmed after their deadline, or captures for an order
    /// refused by timeout and not refunded.
    pub late_charges: u64,
    /// Captures for a refused or cancelled order not refunded.
    pub unrefunded: u64,
    /// Purchased orders with no capture.
    pub uncharged: u64,
    /// Orders or cancels the load never got an answer for.
    pub unresolved: u64,
    /// The round did not settle within its deadline.
    pub unsettled: u64,
}

impl Findings {
    pub fn violations(&self) -> u64 {
        self.lost
            + self.oversold
            + self.stock_mismatch
            + self.double_charges
            + self.late_charges
            + self.unrefunded
            + self.uncharged
            + self.unresolved
            + self.unsettled
    }
}

/// An acknowledged order as last checked.
#[derive(Debug, Clone)]
pub struct Tracked {
    fridge: String,
    meal: String,
    qty: u32,
    status: String,
    charges: u64,
}

impl Tracked {
    /// Whether the order still holds its units (no pickups in chaos runs).
    fn holds_stock(&self) -> bool {
        matches!(self.status.as_str(), "held" | "paying" | "purchased")
    }
}

/// One stock level of the admin fridge view.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    pub on_hand: u32,
    pub reserved: u32,
}

/// `GET /v1/admin/fridges/{id}`: levels by meal.
pub async fn fridge_stock(admin: &Client, fridge: &str) -> HashMap<String, Level> {
    let r = admin.get(&format!("/v1/admin/fridges/{fridge}")).await;
    assert_eq!(r.status, 200, "fridge {fridge}: {}", r.body);
    let units = |l: &Value, k: &str| l[k].as_u64().unwrap_or(0) as u32;
    r.body["stock"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let meal = l["meal_id"].as_str()?.to_string();
            let level = Level {
                on_hand: units(l, "on_hand"),
                reserved: units(l, "reserved"),
            };
            Some((meal, level))
        })
        .collect()
}

/// Whether an order has reached a state nothing in flight will change.
fn settled(order: &Value) -> bool {
    let status = order["status"].as_str().unwrap_or_default();
    !matches!(status, "held" | "paying" | "") && order["refund_pending"] != true
}

/// When the order entered `status`, from its history.
fn entered(order: &Value, status: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    order["history"]
        .as_array()?
        .iter()
        .find(|h| h["status"] == status)?["at"]
        .as_str()?
        .parse()
        .ok()
}

/// What one order and its ledger entry say about the money invariants.
pub fn judge(order: &Value, ledger: &Value, findings: &mut Findings) {
    let charges = ledger["ledger"]["charges"].as_u64().unwrap_or(0);
    let refunds = ledger["ledger"]["refunds"].as_u64().unwrap_or(0);
    findings.double_charges += charges.saturating_sub(1) + refunds.saturating_sub(1);
    let refunded = refunds > 0;
    match order["status"].as_str().unwrap_or_default() {
        "purchased" => {
            findings.uncharged += u64::from(charges == 0);
            let deadline = entered(order, "paying")
                .map(|p| p + chrono::TimeDelta::seconds(PAYMENT_TIMEOUT_SECS));
            let late =
                matches!((entered(order, "purchased"), deadline), (Some(at), Some(d)) if at > d);
            findings.late_charges += u64::from(late);
        }
        "refused" if charges > 0 && !refunded => {
            if order["refusal_reason"] == "timeout" {
                findings.late_charges += 1;
            } else {
                findings.unrefunded += 1;
            }
        }
        "cancelled" | "refunded" if charges > 0 && !refunded => findings.unrefunded += 1,
        _ => {}
    }
}

/// GET with the admin token; the JSON body, or `None` for a 404 (or no answer).
async fn get_json(http: &reqwest::Client, url: String) -> Option<Value> {
    let r = http
        .get(url)
        .bearer_auth(crate::admin_token())
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// `GET {base}/{id}` for every id, a few at a time; those answered.
async fn read_each(http: &reqwest::Client, base: &str, ids: &[String]) -> Vec<(String, Value)> {
    futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            get_json(http, format!("{base}/{id}"))
                .await
                .map(|v| (id, v))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

impl Chaos {
    /// Moves the node's clock past the grace window, then waits until the
    /// system is quiet; the round's orders as then seen, or `None` if it
    /// did not settle in time.
    pub(super) async fn settle(&mut self, ids: &[String]) -> Option<HashMap<String, Value>> {
        self.node.advance_clock(GRACE_WINDOW_SECS + 1).await;
        self.sync_clock().await;
        let started = std::time::Instant::now();
        let mut seen: HashMap<String, Value> = HashMap::new();
        loop {
            let open: Vec<String> = ids
                .iter()
                .filter(|id| !seen.get(*id).is_some_and(settled))
                .cloned()
                .collect();
            for (id, order) in self.read_orders(&open).await {
                seen.insert(id, order);
            }
            let all_settled = ids.iter().all(|id| seen.get(id).is_some_and(settled));
            if all_settled && self.quiet().await {
                return Some(seen);
            }
            if started.elapsed() > SETTLE_DEADLINE {
                return None;
            }
            tokio::time::sleep(SETTLE_STEP).await;
        }
    }

    /// Nothing owed by the outbox, nothing pending on the bus.
    async fn quiet(&self) -> bool {
        let outbox = self.node.readyz().await["outbox_pending"].as_u64();
        outbox == Some(0) && self.nats.consumer_backlog(&self.shared.http).await == Some(0)
    }

    /// The node's view of `ids` (those it answers for).
    async fn read_orders(&self, ids: &[String]) -> Vec<(String, Value)> {
        let base = format!("{}/v1/orders", self.node.base);
        read_each(&self.shared.http, &base, ids).await
    }

    /// The payments ledger for `ids`.
    async fn read_ledgers(&self, ids: &[String]) -> HashMap<String, Value> {
        let base = format!("{}/v1/ledger", self.payments.base);
        read_each(&self.payments.http, &base, ids)
            .await
            .into_iter()
            .collect()
    }

    /// Every invariant, after `settle` (`None`: it did not settle).
    pub(super) async fn check(
        &mut self,
        outcome: &LoadOutcome,
        settled: Option<HashMap<String, Value>>,
    ) -> Findings {
        let mut findings = Findings {
            unresolved: outcome.unresolved,
            unsettled: u64::from(settled.is_none()),
            ..Findings::default()
        };
        self.check_older(&mut findings).await;
        self.check_round(outcome, &mut findings).await;
        self.check_stock(&mut findings).await;
        self.check_totals(&mut findings).await;
        findings
    }

    /// Earlier rounds' orders, a sample: still there, status unchanged.
    async fn check_older(&mut self, findings: &mut Findings) {
        let mut older: Vec<String> = self.orders.keys().cloned().collect();
        older.sort();
        let sample: Vec<String> = (0..OLDER_SAMPLE.min(older.len()))
            .map(|_| older[self.rng.below(older.len())].clone())
            .collect();
        let found: HashMap<String, Value> = self.read_orders(&sample).await.into_iter().collect();
        for id in &sample {
            let same = found
                .get(id)
                .is_some_and(|o| o["status"] == self.orders[id].status.as_str());
            findings.lost += u64::from(!same);
        }
    }

    /// This round's orders: present, and their money right.
    async fn check_round(&mut self, outcome: &LoadOutcome, findings: &mut Findings) {
        let ids: Vec<String> = outcome.acked.iter().map(|a| a.order_id.clone()).collect();
        let orders: HashMap<String, Value> = self.read_orders(&ids).await.into_iter().collect();
        let ledgers = self.read_ledgers(&ids).await;
        for acked in &outcome.acked {
            let Some(order) = orders.get(&acked.order_id) else {
                findings.lost += 1;
                continue;
            };
            let ledger = ledgers.get(&acked.order_id).cloned().unwrap_or(Value::Null);
            judge(order, &ledger, findings);
            self.orders.insert(
                acked.order_id.clone(),
                Tracked {
                    fridge: acked.fridge.clone(),
                    meal: acked.meal.clone(),
                    qty: acked.qty,
                    status: order["status"].as_str().unwrap_or_default().to_string(),
                    charges: ledger["ledger"]["charges"].as_u64().unwrap_or(0),
                },
            );
        }
    }

    /// Per fridge and meal: what open orders hold is what is reserved, on
    /// hand is what was counted in, and nothing is promised beyond it.
    async fn check_stock(&self, findings: &mut Findings) {
        let mut held: HashMap<(&str, &str), u32> = HashMap::new();
        for o in self.orders.values().filter(|o| o.holds_stock()) {
            *held
                .entry((o.fridge.as_str(), o.meal.as_str()))
                .or_default() += o.qty;
        }
        let admin = self.node.admin();
        for fridge in &self.cast.fridges {
            let levels = fridge_stock(&admin, fridge).await;
            for meal in &self.cast.meals {
                let level = levels.get(meal).copied().unwrap_or(Level {
                    on_hand: 0,
                    reserved: 0,
                });
                let counted = self
                    .counted
                    .get(&(fridge.clone(), meal.clone()))
                    .copied()
                    .unwrap_or(0);
                let holding = held
                    .get(&(fridge.as_str(), meal.as_str()))
                    .copied()
                    .unwrap_or(0);
                findings.oversold += u64::from(holding.saturating_sub(counted))
                    + u64::from(level.reserved.saturating_sub(level.on_hand));
                findings.stock_mismatch += u64::from(level.reserved.abs_diff(holding))
                    + u64::from(level.on_hand.abs_diff(counted));
            }
        }
    }

    /// The ledger's totals: no capture beyond those seen order by order
    /// (a capture made later for an older order is a second one).
    async fn check_totals(&self, findings: &mut Findings) {
        let totals = self.payments.totals().await;
        let captured = totals["charges"].as_u64().unwrap_or(0);
        let seen: u64 = self.orders.values().map(|o| o.charges).sum();
        findings.double_charges += captured.saturating_sub(seen);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{judge, Findings};

    fn order(status: &str, history: &[(&str, &str)]) -> serde_json::Value {
        let history: Vec<_> = history
            .iter()
            .map(|(s, at)| json!({"status": s, "at": at}))
            .collect();
        json!({"status": status, "history": history, "refusal_reason": null})
    }

    fn ledger(charges: u64, refunds: u64) -> serde_json::Value {
        json!({"ledger": {"charges": charges, "refunds": refunds}})
    }

    fn findings(order: serde_json::Value, ledger: serde_json::Value) -> Findings {
        let mut f = Findings::default();
        judge(&order, &ledger, &mut f);
        f
    }

    const PAYING: (&str, &str) = ("paying", "2026-01-01T12:00:00Z");

    #[test]
    fn a_purchase_charged_once_in_time_is_clean() {
        let o = order(
            "purchased",
            &[PAYING, ("purchased", "2026-01-01T12:00:01Z")],
        );
        assert_eq!(findings(o, ledger(1, 0)), Findings::default());
    }

    #[test]
    fn each_money_violation_is_counted() {
        let in_time = [PAYING, ("purchased", "2026-01-01T12:00:01Z")];
        let late = [PAYING, ("purchased", "2026-01-01T12:01:01Z")];
        let f = findings(order("purchased", &in_time), ledger(2, 0));
        assert_eq!(f.double_charges, 1);
        assert_eq!(
            findings(order("purchased", &in_time), ledger(0, 0)).uncharged,
            1
        );
        assert_eq!(
            findings(order("purchased", &late), ledger(1, 0)).late_charges,
            1
        );
        assert_eq!(
            findings(order("cancelled", &[]), ledger(1, 0)).unrefunded,
            1
        );
        assert_eq!(
            findings(order("refused", &[PAYING]), ledger(1, 0)).unrefunded,
            1
        );
        let mut timed_out = order("refused", &[PAYING]);
        timed_out["refusal_reason"] = json!("timeout");
        assert_eq!(findings(timed_out.clone(), ledger(1, 0)).late_charges, 1);
        assert_eq!(findings(timed_out, ledger(1, 1)), Findings::default());
        assert_eq!(
            findings(order("refunded", &[]), ledger(1, 1)),
            Findings::default()
        );
    }
}
