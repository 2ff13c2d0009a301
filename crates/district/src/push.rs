//! Push to apps: what a committed batch means for WebSocket subscribers.
//!
//! This module is pure (no tokio, no sockets): [`changes`] compares the
//! district state before and after a committed batch and says which messages
//! go where; [`Interest`] says whether a connection wants a message;
//! [`cover`] resolves an area to geohash cells. The [`hub`] task drives it
//! from the writer's committed feed and fans the messages out; `http::ws`
//! owns the sockets.
//!
//! **Versions.** Every pushed message carries a `version`: a number that
//! strictly increases over the node's messages and is derived from the log
//! (`seq << VERSION_SLOT_BITS | slot`, slot = the message's index within its
//! batch), so resuming with `since` = the last version seen is exact. Stock
//! messages carry absolute counts, so a client never has to add anything up.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use protocol::geo::GeoPoint;
use protocol::orders::{OrderId, OrderStatus, RefusalReason};
use protocol::promotions::PromotionEvent;
use protocol::schedule::ScheduleEvent;
use protocol::{ChargeId, Event, EventEnvelope, FridgeId, MealId, PlanId, StreamId};
use serde::{Deserialize, Serialize};

use crate::DistrictState;

/// Bits of a version that number the messages of one batch.
pub const VERSION_SLOT_BITS: u32 = 16;
/// Most messages one batch may produce; the last slot is reserved to mean
/// "everything of this seq" (see [`version_after`]).
pub const MAX_MESSAGES_PER_BATCH: usize = (1 << VERSION_SLOT_BITS) - 1;
/// Most geohash cells one area subscription may resolve to; bigger areas are
/// covered by coarser cells.
pub const MAX_CELLS_PER_AREA: usize = 32;
/// Finest cell precision an area resolves to (≈ 153 m × 153 m).
pub const FINEST_AREA_PRECISION: usize = 7;
/// Precision of the cell named in a fridge's `catalog_updated` area.
pub const CATALOG_AREA_PRECISION: usize = 6;
const METERS_PER_DEGREE_LAT: f64 = 111_320.0;

/// The version of message `slot` of the batch ending at `seq`.
pub fn version_at(seq: u64, slot: usize) -> u64 {
    (seq << VERSION_SLOT_BITS) | slot as u64
}

/// The version meaning "every message up to and including log `seq`".
pub fn version_after(seq: u64) -> u64 {
    version_at(seq, MAX_MESSAGES_PER_BATCH)
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// About one fridge: its subscribers and every area covering it.
    Fridge {
        fridge_id: FridgeId,
        geohash: String,
    },
    /// About the whole district (a meal's definition): every connection with
    /// an area or fridge subscription.
    District,
    /// An order's owner, and nobody else.
    Customer(String),
}

/// Messages the server sends (`type` tagged JSON, see API.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The catalog changed in `area` (geohash prefixes): refetch it with the
    /// ETag. `catalog_version` is the version the refetch will return.
    CatalogUpdated {
        catalog_id: String,
        version: u64,
        catalog_version: u64,
        area: Vec<String>,
    },
    /// Units a customer can buy now, and what one costs while a campaign
    /// lowers the list price (as of the batch's time).
    Stock {
        fridge_id: FridgeId,
        meal_id: MealId,
        available: u32,
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price_now: Option<i64>,
    },
    /// A status change of one of the caller's orders.
    Order {
        order_id: OrderId,
        status: OrderStatus,
        at: DateTime<Utc>,
        version: u64,
        fridge_id: FridgeId,
        #[serde(skip_serializing_if = "Option::is_none")]
        pickup_code: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pickup_deadline: Option<DateTime<Utc>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        refusal_reason: Option<RefusalReason>,
        /// Meals the fridge holds too few of for this order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shortage: Vec<MealId>,
    },
    /// The result of a charge for one of the caller's plans: a declined one
    /// is retried with backoff, or at once after a change of payment method.
    PlanCharge {
        plan_id: PlanId,
        charge_id: ChargeId,
        /// `paid` or `declined`.
        status: String,
        amount: i64,
        version: u64,
    },
    /// One of the caller's notifications (`district::notifications`):
    /// `{id, at, kind, ...}`; `version` equals `id`. Sent live to the
    /// customer's connections that follow orders, and replayed from the
    /// last 24 h on a subscribe with `since`.
    Notification {
        version: u64,
        #[serde(flatten)]
        notification: serde_json::Map<String, serde_json::Value>,
    },
    /// Answer to subscribe/unsubscribe: what the connection now follows and
    /// the version it is at.
    Subscribed {
        version: u64,
        areas: usize,
        fridges: usize,
        orders: bool,
    },
    /// Part of a subscribed area lies in other districts: their nodes (from
    /// the region directory) push what happens there; this one does not.
    Elsewhere {
        districts: Vec<ElsewhereDistrict>,
    },
    /// `since` is older than what the node keeps (or from before a restart):
    /// refetch over HTTP, then carry on from `version`.
    Resync {
        version: u64,
    },
    Pong,
    Error {
        code: String,
        message: String,
    },
}

/// A district serving part of a subscribed area, and where to subscribe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElsewhereDistrict {
    pub district_id: String,
    /// The node's base URL (`http://…`); its WebSocket is `/v1/ws` there.
    pub url: String,
}

/// A message ready to fan out: encoded once, shared by every connection.
#[derive(Debug, Clone)]
pub struct Push {
    pub version: u64,
    pub route: Route,
    /// UTF-8 JSON; `Bytes` so every connection shares one allocation.
    pub frame: bytes::Bytes,
}

impl ServerMessage {
    pub fn to_frame(&self) -> bytes::Bytes {
        // Serializing these plain structs cannot fail; an empty object would
        // only ever show a bug, never lose data.
        serde_json::to_vec(self)
            .unwrap_or_else(|_| b"{}".to_vec())
            .into()
    }
}

/// What a batch changed, as messages in version order. `prev` is the state
/// the previous batch left, `next` the state after `events`.
/// `utc_offset_minutes` is the district's (campaign times are local); the
/// prices in stock messages are as of the batch's last event.
pub fn changes(
    prev: &DistrictState,
    next: &DistrictState,
    events: &[EventEnvelope],
    district_id: &str,
    district_prefixes: &[String],
    utc_offset_minutes: i32,
) -> Vec<Push> {
    let mut out: Vec<(Route, ServerMessage)> = Vec::new();
    catalog_changes(prev, next, events, district_id, district_prefixes, &mut out);
    let when = events.last().map(|e| crate::promotions::When {
        local: (e.recorded_at + chrono::Duration::minutes(i64::from(utc_offset_minutes)))
            .naive_utc(),
        utc: e.recorded_at,
    });
    stock_changes(prev, next, when.as_ref(), &mut out);
    order_changes(prev, next, events, &mut out);
    charge_results(next, events, &mut out);
    // The slots above are the notifications' (`notifications` ids).
    out.truncate(crate::notifications::NOTIFICATION_SLOT_BASE);
    out.into_iter()
        .enumerate()
        .map(|(slot, (route, mut msg))| {
            let version = version_at(next.last_seq(), slot);
            match &mut msg {
                ServerMessage::CatalogUpdated { version: v, .. }
                | ServerMessage::Stock { version: v, .. }
                | ServerMessage::Order { version: v, .. }
                | ServerMessage::PlanCharge { version: v, .. } => *v = version,
                _ => {}
            }
            Push {
                version,
                route,
                frame: msg.to_frame(),
            }
        })
        .collect()
}

/// A notification as a push to its customer (its id is its version).
pub fn notification_push(n: &crate::notifications::Notification) -> Push {
    let msg = ServerMessage::Notification {
        version: n.id,
        notification: n.to_json(),
    };
    Push {
        version: n.id,
        route: Route::Customer(n.customer.clone()),
        frame: msg.to_frame(),
    }
}

/// The notifications a batch recorded (after the state `prev`), as pushes.
pub fn notification_changes(prev: &DistrictState, next: &DistrictState) -> Vec<Push> {
    next.notifications()
        .after(version_after(prev.last_seq()))
        .map(notification_push)
        .collect()
}

/// A meal's definition or a campaign changed: the whole district's
/// catalog; a fridge changed: the cell around it.
fn catalog_changes(
    prev: &DistrictState,
    next: &DistrictState,
    events: &[EventEnvelope],
    district_id: &str,
    district_prefixes: &[String],
    out: &mut Vec<(Route, ServerMessage)>,
) {
    let updated = |area: Vec<String>| ServerMessage::CatalogUpdated {
        catalog_id: district_id.to_string(),
        version: 0,
        catalog_version: next.catalog_version(),
        area,
    };
    // A meal's definition or a campaign (its prices) changed everywhere,
    // also when only the clock turned a campaign's hours.
    let campaigns_changed = !prev
        .promotions()
        .campaigns()
        .ptr_eq(next.promotions().campaigns())
        || events.iter().any(|e| {
            matches!(
                e.event,
                Event::Promotion(PromotionEvent::CampaignHoursTurned { .. })
            )
        });
    if !prev.catalog().meals().ptr_eq(next.catalog().meals()) || campaigns_changed {
        out.push((Route::District, updated(district_prefixes.to_vec())));
    }
    if prev.catalog().fridges().ptr_eq(next.catalog().fridges()) {
        return;
    }
    for (fridge_id, fridge) in next.catalog().fridges().iter() {
        if prev.catalog().fridge(fridge_id) == Some(fridge) {
            continue;
        }
        let cell: String = fridge
            .geohash
            .chars()
            .take(CATALOG_AREA_PRECISION)
            .collect();
        let route = Route::Fridge {
            fridge_id: fridge_id.clone(),
            geohash: fridge.geohash.clone(),
        };
        out.push((route, updated(vec![cell])));
    }
}

/// Every (fridge, meal) whose available count changed, with the new count;
/// a level that disappeared reads as 0.
fn stock_changes(
    prev: &DistrictState,
    next: &DistrictState,
    when: Option<&crate::promotions::When>,
    out: &mut Vec<(Route, ServerMessage)>,
) {
    let priced = when.filter(|_| !next.promotions().campaigns().is_empty());
    if prev.stock().levels().ptr_eq(next.stock().levels()) {
        return;
    }
    // Once per batch, not per shelf.
    let offers = next.promotions().offers();
    for (fridge_id, meals) in next.stock().levels().iter() {
        let before = prev.stock().fridge(fridge_id);
        if before.is_some_and(|b| b.ptr_eq(meals)) {
            continue;
        }
        let Some(fridge) = next.catalog().fridge(fridge_id) else {
            continue;
        };
        let route = Route::Fridge {
            fridge_id: fridge_id.clone(),
            geohash: fridge.geohash.clone(),
        };
        let was = |meal: &str| {
            before
                .and_then(|b| b.get(meal))
                .map(|l| l.available())
                .unwrap_or(0)
        };
        let price_now = |meal_id: &MealId| {
            let meal = next.catalog().meal(meal_id)?;
            let p = crate::promotions::display_price(next, &offers, fridge, meal, priced?);
            (p.now_minor != p.list_minor).then_some(p.now_minor)
        };
        let stock = |meal_id: &MealId, available: u32| ServerMessage::Stock {
            fridge_id: fridge_id.clone(),
            meal_id: meal_id.clone(),
            available,
            version: 0,
            price_now: price_now(meal_id),
        };
        for (meal_id, level) in meals.iter() {
            let available = level.available();
            if available != was(meal_id) {
                out.push((route.clone(), stock(meal_id, available)));
            }
        }
        for (meal_id, _) in before.into_iter().flat_map(|b| b.iter()) {
            if !meals.contains_key(meal_id) && was(meal_id) > 0 {
                out.push((route.clone(), stock(meal_id, 0)));
            }
        }
    }
}

/// Each plan charge the batch settled, to its customer.
fn charge_results(
    next: &DistrictState,
    events: &[EventEnvelope],
    out: &mut Vec<(Route, ServerMessage)>,
) {
    for env in events {
        let Event::Schedule(ScheduleEvent::ChargeSettled {
            charge_id,
            plan_id,
            approved,
            ..
        }) = &env.event
        else {
            continue;
        };
        let Some(charge) = next.schedule().charges.get(charge_id.as_str()) else {
            continue;
        };
        out.push((
            Route::Customer(charge.customer.clone()),
            ServerMessage::PlanCharge {
                plan_id: plan_id.clone(),
                charge_id: charge_id.clone(),
                status: if *approved { "paid" } else { "declined" }.into(),
                amount: charge.amount,
                version: 0,
            },
        ));
    }
}

/// Each order the batch moved (status or shortage), once, to its customer.
fn order_changes(
    prev: &DistrictState,
    next: &DistrictState,
    events: &[EventEnvelope],
    out: &mut Vec<(Route, ServerMessage)>,
) {
    let mut seen_orders = HashSet::new();
    for env in events {
        let StreamId::Order(order_id) = env.event.stream() else {
            continue;
        };
        if !seen_orders.insert(order_id.clone()) {
            continue;
        }
        let Some(order) = next.orders().get(&order_id) else {
            continue;
        };
        let grew = prev
            .orders()
            .get(&order_id)
            .is_none_or(|p| p.history.len() != order.history.len() || p.shortage != order.shortage);
        if !grew {
            continue;
        }
        let at = order
            .history
            .last()
            .map(|c| c.at)
            .unwrap_or(env.recorded_at);
        out.push((
            Route::Customer(order.customer.clone()),
            ServerMessage::Order {
                order_id: order.order_id.clone(),
                status: order.status,
                at,
                version: 0,
                fridge_id: order.fridge_id.clone(),
                pickup_code: order.pickup_code.clone(),
                pickup_deadline: order.pickup_deadline,
                refusal_reason: order.refusal_reason,
                shortage: order.shortage.clone(),
            },
        ));
    }
}

/// An area a client asked to follow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaSpec {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: u32,
}

/// The geohash cells covering the circle around `center`: as fine as
/// possible without exceeding [`MAX_CELLS_PER_AREA`]. Cells cover at least
/// the circle (a fridge just outside it may be included, never one inside
/// left out).
pub fn cover(center: &GeoPoint, radius_m: u32) -> Vec<String> {
    let r = f64::from(radius_m.max(1));
    let dlat = r / METERS_PER_DEGREE_LAT;
    let dlon = r / (METERS_PER_DEGREE_LAT * center.lat.to_radians().cos().max(0.01));
    let (south, north) = (
        (center.lat - dlat).max(-90.0),
        (center.lat + dlat).min(90.0),
    );
    let (west, east) = (
        (center.lon - dlon).max(-180.0),
        (center.lon + dlon).min(180.0),
    );
    for precision in (1..=FINEST_AREA_PRECISION).rev() {
        let bits = 5 * precision as i32;
        let lat_bits = bits / 2;
        let lon_bits = bits - lat_bits;
        let cell_h = 180.0 / 2f64.powi(lat_bits);
        let cell_w = 360.0 / 2f64.powi(lon_bits);
        let rows = ((north - south) / cell_h).ceil() as usize + 1;
        let cols = ((east - west) / cell_w).ceil() as usize + 1;
        if rows * cols > MAX_CELLS_PER_AREA && precision > 1 {
            continue;
        }
        let mut cells = BTreeSet::new();
        for i in 0..=rows {
            let lat = (south + i as f64 * cell_h).min(north);
            for j in 0..=cols {
                let lon = (west + j as f64 * cell_w).min(east);
                cells.insert(GeoPoint { lat, lon }.geohash(precision));
            }
        }
        return cells.into_iter().collect();
    }
    Vec::new()
}

/// What one connection follows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interest {
    /// Areas as asked, each with its cells.
    pub areas: Vec<(AreaSpec, Vec<String>)>,
    pub fridges: BTreeSet<FridgeId>,
    /// The customer whose orders this connection receives (from its token).
    pub customer: Option<String>,
}

impl Interest {
    /// Number of area and fridge subscriptions (what the limit counts).
    pub fn subscriptions(&self) -> usize {
        self.areas.len() + self.fridges.len()
    }

    /// Every cell of every area.
    pub fn cells(&self) -> BTreeSet<&str> {
        self.areas
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(String::as_str))
            .collect()
    }

    pub fn wants(&self, route: &Route) -> bool {
        match route {
            Route::Fridge { fridge_id, geohash } => {
                self.fridges.contains(fridge_id)
                    || self
                        .areas
                        .iter()
                        .any(|(_, cells)| cells.iter().any(|c| geohash.starts_with(c.as_str())))
            }
            Route::District => !self.areas.is_empty() || !self.fridges.is_empty(),
            Route::Customer(c) => self.customer.as_deref() == Some(c.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gh(lat: f64, lon: f64, p: usize) -> String {
        GeoPoint { lat, lon }.geohash(p)
    }

    #[test]
    fn cover_contains_every_point_of_the_circle() {
        let center = GeoPoint {
            lat: 42.3314,
            lon: -83.0458,
        };
        for radius in [50, 500, 2_000, 10_000, 50_000] {
            let cells = cover(&center, radius);
            assert!(!cells.is_empty() && cells.len() <= MAX_CELLS_PER_AREA);
            let r = f64::from(radius) * 0.99;
            for step in 0..64 {
                let a = f64::from(step) * std::f64::consts::TAU / 64.0;
                let dlat = r * a.sin() / METERS_PER_DEGREE_LAT;
                let dlon = r * a.cos() / (METERS_PER_DEGREE_LAT * center.lat.to_radians().cos());
                let p = gh(center.lat + dlat, center.lon + dlon, 9);
                assert!(
                    cells.iter().any(|c| p.starts_with(c.as_str())),
                    "radius {radius}: {p} not covered by {cells:?}"
                );
            }
        }
    }

    #[test]
    fn cover_is_fine_for_small_areas_and_coarse_for_big_ones() {
        let center = GeoPoint {
            lat: 42.3314,
            lon: -83.0458,
        };
        let small = cover(&center, 100);
        let big = cover(&center, 50_000);
        assert_eq!(small[0].len(), FINEST_AREA_PRECISION);
        assert!(big[0].len() < 5);
    }

    #[test]
    fn interest_routes_by_fridge_area_and_customer() {
        let center = GeoPoint {
            lat: 42.3314,
            lon: -83.0458,
        };
        let mut i = Interest::default();
        assert!(!i.wants(&Route::District));
        i.areas.push((
            AreaSpec {
                lat: center.lat,
                lon: center.lon,
                radius_m: 300,
            },
            cover(&center, 300),
        ));
        let near = Route::Fridge {
            fridge_id: FridgeId::from_static("f-near"),
            geohash: gh(42.3316, -83.0460, 9),
        };
        let far = Route::Fridge {
            fridge_id: FridgeId::from_static("f-far"),
            geohash: gh(42.40, -83.20, 9),
        };
        assert!(i.wants(&near));
        assert!(!i.wants(&far));
        assert!(i.wants(&Route::District));
        i.fridges.insert(FridgeId::from_static("f-far"));
        assert!(i.wants(&far));
        assert!(!i.wants(&Route::Customer("alice".into())));
        i.customer = Some("alice".into());
        assert!(i.wants(&Route::Customer("alice".into())));
        assert!(!i.wants(&Route::Customer("bob".into())));
    }

    #[test]
    fn versions_increase_with_seq_then_slot() {
        assert!(version_at(7, 3) < version_at(7, 4));
        assert!(version_at(7, MAX_MESSAGES_PER_BATCH - 1) < version_after(7));
        assert!(version_after(7) < version_at(8, 0));
    }
}
