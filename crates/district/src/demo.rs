//! The demo district (downtown Detroit: fridges at real places, meals with
//! full nutrition facts from three kitchens) as the commands an admin would
//! send. Pure: the node's `demo` module submits them, tests apply them.

use protocol::catalog::{FridgeSpec, MealSpec, Nutrition, StockSpec};
use protocol::geo::DistrictArea;
use protocol::{FridgeId, KitchenId, MealId};
use serde::Deserialize;

use crate::{CatalogCommand, Command};

/// The demo district, as shipped in `deploy/demo/detroit.json`.
pub const DETROIT_JSON: &str = include_str!("../../../deploy/demo/detroit.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoData {
    pub meals: Vec<DemoMeal>,
    pub fridges: Vec<DemoFridge>,
    pub stock: Vec<DemoStock>,
}

#[derive(Debug, Deserialize)]
pub struct DemoMeal {
    pub meal_id: MealId,
    #[serde(flatten)]
    pub spec: MealSpec,
}

#[derive(Debug, Deserialize)]
pub struct DemoFridge {
    pub fridge_id: FridgeId,
    #[serde(flatten)]
    pub spec: FridgeSpec,
}

#[derive(Debug, Deserialize)]
pub struct DemoStock {
    pub fridge_id: FridgeId,
    #[serde(flatten)]
    pub spec: StockSpec,
}

/// The second demo district (west Detroit: Southwest and Warrendale, two
/// kitchens of its own), as shipped in `deploy/demo/detroit-west.json`.
pub const DETROIT_WEST_JSON: &str = include_str!("../../../deploy/demo/detroit-west.json");

/// The shipped demo data; an error only if the file in `deploy/` is broken.
pub fn detroit() -> Result<DemoData, serde_json::Error> {
    serde_json::from_str(DETROIT_JSON)
}

/// The demo data of a district by its id: `detroit-west` has its own, any
/// other district gets downtown's (the data every test and demo knows).
pub fn json_for(district_id: &str) -> &'static str {
    match district_id {
        "detroit-west" => DETROIT_WEST_JSON,
        _ => DETROIT_JSON,
    }
}

/// [`json_for`], parsed.
pub fn for_district(district_id: &str) -> Result<DemoData, serde_json::Error> {
    serde_json::from_str(json_for(district_id))
}

/// Every command that builds the demo district, in order.
pub fn commands(data: DemoData) -> Vec<Command> {
    let meals = data.meals.into_iter().map(|m| CatalogCommand::DefineMeal {
        meal_id: m.meal_id,
        spec: m.spec,
    });
    let fridges = data
        .fridges
        .into_iter()
        .map(|f| CatalogCommand::RegisterFridge {
            fridge_id: f.fridge_id,
            spec: f.spec,
        });
    let stock = data.stock.into_iter().map(|s| CatalogCommand::SetStock {
        fridge_id: s.fridge_id,
        spec: s.spec,
    });
    meals
        .chain(fridges)
        .chain(stock)
        .map(Command::Catalog)
        .collect()
}

/// The demo district's geohash prefixes (`deploy/dev/region-detroit.toml`).
pub const PREFIXES: [&str; 3] = ["dpsbv", "dpsby", "dpscj"];
/// The second demo district's prefixes (`detroit-west`).
pub const WEST_PREFIXES: [&str; 2] = ["dpsbg", "dpsbu"];

/// The demo district's area.
pub fn area() -> DistrictArea {
    // The prefixes are constants that parse; a failure is a bug in this file.
    DistrictArea::new(PREFIXES.iter().map(|p| p.to_string()).collect())
        .expect("demo prefixes are valid geohashes")
}

/// A plain meal from kitchen `k-1` at `price` minor units, for tests and
/// benchmarks that need a meal and do not care which.
pub fn plain_meal(price: i64) -> MealSpec {
    MealSpec {
        name: "Bowl".into(),
        description: String::new(),
        kitchen_id: KitchenId::from_static("k-1"),
        price,
        currency: protocol::money::Currency::try_from("USD".to_string())
            .expect("USD is a currency code"),
        nutrition: Nutrition {
            kcal: 500,
            protein_mg: 1,
            fat_mg: 1,
            carbs_mg: 2,
            sugar_mg: 1,
            salt_mg: 1,
        },
        allergens: vec![],
        ingredients: vec![],
        tags: vec![],
        shelf_life_hours: 24,
    }
}

/// A frostline-json fridge named `name` at Campus Martius (inside the demo
/// area), without a telemetry secret, for tests that need a fridge and do
/// not care which.
pub fn plain_fridge(name: &str) -> FridgeSpec {
    FridgeSpec {
        name: name.into(),
        address: String::new(),
        lat: 42.3316,
        lon: -83.0466,
        vendor: "frostline-json".into(),
        secret: None,
    }
}

/// One unit of `meal_id` from `fridge_id`, paid with the sandbox's
/// `tok_visa`, no coupon, points or share code: the order tests and
/// benches place when they do not care which.
pub fn one_unit(fridge_id: FridgeId, meal_id: MealId) -> protocol::orders::PlaceOrder {
    protocol::orders::PlaceOrder {
        fridge_id,
        items: vec![protocol::orders::OrderItem { meal_id, qty: 1 }],
        coupon: None,
        share_code: None,
        points: None,
        payment_method: "tok_visa".into(),
        pickup_date: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every demo fridge lies inside its district, and the data builds.
    #[test]
    fn both_demo_districts_parse_and_their_fridges_are_inside() {
        for (id, prefixes) in [
            ("detroit-downtown", &PREFIXES[..]),
            ("detroit-west", &WEST_PREFIXES[..]),
        ] {
            let area = DistrictArea::new(prefixes.iter().map(|p| p.to_string()).collect())
                .expect("prefixes");
            let data = for_district(id).expect("demo data parses");
            assert!(!data.meals.is_empty() && !data.fridges.is_empty());
            for f in &data.fridges {
                let at = protocol::geo::GeoPoint::new(f.spec.lat, f.spec.lon).expect("point");
                assert!(area.contains(&at), "{id}: {} is outside", f.fridge_id);
            }
        }
    }
}
