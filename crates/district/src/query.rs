//! Read-side queries over a published `DistrictState` snapshot. Pure
//! functions: the HTTP layer loads the latest snapshot and calls these, so a
//! read never waits on the writer and never sees a non-durable change.

use protocol::catalog::{CatalogView, FridgeView, MealAvailability};
use protocol::geo::GeoPoint;
use protocol::DistrictId;

use crate::promotions::{self, When};
use crate::DistrictState;

/// Fridges within `radius_m` of `at`, nearest first (ties by id, so the answer
/// is stable), each with the meals a customer can buy there now, and the
/// price a campaign makes of them at `when` (`price_now`, only while one
/// applies).
pub fn catalog_near(
    state: &DistrictState,
    district_id: &DistrictId,
    at: &GeoPoint,
    radius_m: u32,
    when: &When,
) -> CatalogView {
    let campaigns = !state.promotions().campaigns().is_empty();
    // Once per query, not per shelf.
    let offers = state.promotions().offers();
    let mut fridges: Vec<(f64, FridgeView)> = state
        .catalog()
        .fridges()
        .values()
        .filter_map(|fridge| {
            let distance = at.distance_m(&fridge.position);
            (distance <= f64::from(radius_m)).then_some((distance, fridge))
        })
        .map(|(distance, fridge)| {
            let meals = state
                .stock()
                .fridge(&fridge.fridge_id)
                .into_iter()
                .flat_map(|per_meal| per_meal.iter())
                .filter_map(|(meal_id, level)| {
                    let meal = state.catalog().meal(meal_id)?;
                    let available = level.available();
                    if available == 0 {
                        return None;
                    }
                    let now = campaigns
                        .then(|| promotions::display_price(state, &offers, fridge, meal, when))
                        .filter(|p| p.now_minor != p.list_minor);
                    Some(MealAvailability {
                        meal_id: meal_id.clone(),
                        name: meal.spec.name.clone(),
                        price: meal.spec.price,
                        currency: meal.spec.currency.clone(),
                        available,
                        price_now: now.as_ref().map(|p| p.now_minor),
                        campaigns: now.map(|p| p.campaigns).unwrap_or_default(),
                    })
                })
                .collect();
            let view = FridgeView {
                fridge_id: fridge.fridge_id.clone(),
                name: fridge.name.clone(),
                address: fridge.address.clone(),
                lat: fridge.position.lat,
                lon: fridge.position.lon,
                distance_m: distance.round() as u32,
                status: fridge.status,
                meals,
            };
            (distance, view)
        })
        .collect();
    fridges.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| a.1.fridge_id.cmp(&b.1.fridge_id))
    });
    CatalogView {
        district_id: district_id.clone(),
        version: state.catalog_version(),
        fridges: fridges.into_iter().map(|(_, v)| v).collect(),
    }
}

/// Most other fridges named when an order is refused for stock.
pub const MAX_ALTERNATIVES: usize = 3;

/// Another fridge that has some of the meals an order could not get.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    pub fridge_id: protocol::FridgeId,
    pub name: String,
    pub distance_m: u32,
    /// The asked-for meals it has now, with the units a customer can buy.
    pub meals: Vec<(protocol::MealId, u32)>,
}

/// The nearest online fridges (after `fridge_id`, at most
/// [`MAX_ALTERNATIVES`]) that have at least one of `meals` for sale now,
/// for the answer to an order refused for stock: the app moves the
/// customer on in one tap.
pub fn alternatives(
    state: &DistrictState,
    fridge_id: &str,
    meals: &[protocol::MealId],
) -> Vec<Alternative> {
    use protocol::catalog::FridgeStatus;
    let Some(from) = state.catalog().fridge(fridge_id).map(|f| f.position) else {
        return vec![];
    };
    let mut found: Vec<Alternative> = state
        .catalog()
        .fridges()
        .values()
        .filter(|f| f.fridge_id.as_str() != fridge_id && f.status == FridgeStatus::Online)
        .filter_map(|f| {
            let have: Vec<(protocol::MealId, u32)> = meals
                .iter()
                .map(|m| (m.clone(), state.stock_level(&f.fridge_id, m).available()))
                .filter(|(_, units)| *units > 0)
                .collect();
            (!have.is_empty()).then(|| Alternative {
                fridge_id: f.fridge_id.clone(),
                name: f.name.clone(),
                // Within a district: far below u32::MAX metres.
                distance_m: from.distance_m(&f.position).round() as u32,
                meals: have,
            })
        })
        .collect();
    found.sort_by(|a, b| (a.distance_m, &a.fridge_id).cmp(&(b.distance_m, &b.fridge_id)));
    found.truncate(MAX_ALTERNATIVES);
    found
}

/// An excursion under way at a fridge (above its limit now).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ExcursionView {
    pub since: chrono::DateTime<chrono::Utc>,
    pub max_milli_c: i32,
    /// Whether it has lasted long enough to quarantine the fridge.
    pub alerted: bool,
}

/// One fridge on the operators' fleet map: where it is, whether it sells,
/// when it last reported, an excursion under way and its latest notices
/// (the same notices as the single-fridge admin view).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FleetFridge<'a> {
    pub fridge_id: &'a protocol::FridgeId,
    pub name: &'a str,
    pub lat: f64,
    pub lon: f64,
    pub status: protocol::catalog::FridgeStatus,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub excursion: Option<ExcursionView>,
    pub notices: Vec<&'a crate::links::FridgeNotice>,
}

/// Every fridge of the district for operators, by id.
pub fn fleet(state: &DistrictState) -> Vec<FleetFridge<'_>> {
    state
        .catalog()
        .fridges()
        .values()
        .map(|fridge| {
            let cursor = match state.links().cursor(&fridge.fridge_id) {
                Some(crate::links::Cursor::Known(c)) => Some(c),
                _ => None,
            };
            FleetFridge {
                fridge_id: &fridge.fridge_id,
                name: &fridge.name,
                lat: fridge.position.lat,
                lon: fridge.position.lon,
                status: fridge.status,
                last_seen: cursor.and_then(|c| c.last_seen),
                excursion: cursor
                    .and_then(|c| c.temperature.excursion)
                    .map(|e| ExcursionView {
                        since: e.since,
                        max_milli_c: e.max_milli_c,
                        alerted: e.alerted,
                    }),
                notices: state.links().notices(&fridge.fridge_id).collect(),
            }
        })
        .collect()
}
