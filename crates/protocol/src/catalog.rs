//! Catalog and stock: meals, fridges, stock levels, and the catalog view the
//! app reads. Specs (`MealSpec`, `FridgeSpec`) are what an admin sends; they are
//! validated here so every adapter applies the same rules.

use serde::{Deserialize, Serialize};

use crate::geo::GeoPoint;
use crate::money::{Currency, Money, MAX_MEAL_PRICE_MINOR};
use crate::ValidationError;
use crate::{DistrictId, FridgeId, KitchenId, MealId};

/// Longest meal/fridge name, in bytes.
pub const MAX_NAME_LEN: usize = 120;
/// Longest description or address, in bytes.
pub const MAX_TEXT_LEN: usize = 2_000;
/// Most allergens, ingredients or tags on one meal.
pub const MAX_LIST_ITEMS: usize = 64;
/// Longest shelf life a fresh meal may declare (three weeks), in hours.
pub const MAX_SHELF_LIFE_HOURS: u32 = 21 * 24;
/// Most units of one meal in one fridge; a fridge shelf holds dozens, not more.
pub const MAX_UNITS_PER_MEAL: u32 = 10_000;
/// Upper bounds for nutrition facts per portion, so typos are refused.
pub const MAX_KCAL: u32 = 5_000;
pub const MAX_NUTRIENT_MG: u32 = 500_000;

/// Nutrition facts per portion. Energy in kcal, nutrients in milligrams so
/// they stay integers (12.5 g protein = 12_500 mg).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nutrition {
    pub kcal: u32,
    pub protein_mg: u32,
    pub fat_mg: u32,
    pub carbs_mg: u32,
    pub sugar_mg: u32,
    pub salt_mg: u32,
}

/// What an admin sends to create or update a meal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MealSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kitchen_id: KitchenId,
    /// Price in minor units of `currency`.
    pub price: i64,
    pub currency: Currency,
    pub nutrition: Nutrition,
    #[serde(default)]
    pub allergens: Vec<String>,
    #[serde(default)]
    pub ingredients: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub shelf_life_hours: u32,
}

/// A meal as the catalog keeps it (and the log stores it: no `flatten`,
/// which postcard cannot decode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meal {
    pub meal_id: MealId,
    pub spec: MealSpec,
}

/// `GET /v1/meals/{id}` response: the meal's fields at the top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MealView {
    pub meal_id: MealId,
    #[serde(flatten)]
    pub spec: MealSpec,
}

/// Lifecycle of a fridge as the catalog shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FridgeStatus {
    Online,
    Offline,
    Quarantined,
}

/// What an admin sends to register or update a fridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FridgeSpec {
    pub name: String,
    #[serde(default)]
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    /// Firmware dialect the fridge speaks (see the fridge ACL).
    #[serde(default = "default_vendor")]
    pub vendor: String,
    /// Shared secret the fridge signs telemetry with. Write-only: never served.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validation::not_null"
    )]
    pub secret: Option<String>,
}

fn default_vendor() -> String {
    "frostline-json".into()
}

/// A fridge as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fridge {
    pub fridge_id: FridgeId,
    pub name: String,
    pub address: String,
    pub position: GeoPoint,
    pub geohash: String,
    pub vendor: String,
    pub status: FridgeStatus,
}

/// Stock of one meal in one fridge. `available` is derived, never stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Units physically in the fridge as last scanned or set, corrected by
    /// pickups and refills.
    pub on_hand: u32,
    /// Units promised to open orders.
    pub reserved: u32,
    /// Units that must not be sold (temperature excursion, recall).
    pub quarantined: u32,
    /// Units past their best-before, still on the shelf.
    #[serde(default)]
    pub expired: u32,
    /// Units held for customers on the back-in-stock waitlist (one per
    /// hold): off sale until used by an order, lapsed or given back.
    #[serde(default)]
    pub held: u32,
}

impl StockLevel {
    /// Units a customer may still buy; never negative.
    pub fn available(&self) -> u32 {
        self.on_hand
            .saturating_sub(self.reserved)
            .saturating_sub(self.held)
            .saturating_sub(self.quarantined)
            .saturating_sub(self.expired)
    }
}

/// One line of a manual stock correction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockCount {
    pub meal_id: MealId,
    pub units: u32,
}

/// Body of `PUT /v1/admin/fridges/{id}/stock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockSpec {
    pub counts: Vec<StockCount>,
}

/// `GET /v1/catalog` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogView {
    pub district_id: DistrictId,
    pub version: u64,
    pub fridges: Vec<FridgeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FridgeView {
    pub fridge_id: FridgeId,
    pub name: String,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    pub distance_m: u32,
    pub status: FridgeStatus,
    pub meals: Vec<MealAvailability>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MealAvailability {
    pub meal_id: MealId,
    pub name: String,
    pub price: i64,
    pub currency: Currency,
    pub available: u32,
    /// What one unit costs now while a campaign lowers `price` (the list
    /// price); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_now: Option<i64>,
    /// The campaigns that make `price_now`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<crate::CampaignId>,
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), ValidationError> {
    if required && value.trim().is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if value.len() > max {
        return Err(ValidationError::TooLong { field, max });
    }
    Ok(())
}

fn check_list(field: &'static str, items: &[String]) -> Result<(), ValidationError> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(ValidationError::TooManyEntries {
            field,
            max: MAX_LIST_ITEMS,
        });
    }
    for item in items {
        check_text(field, item, MAX_NAME_LEN, true)?;
    }
    Ok(())
}

impl MealSpec {
    /// The price of one portion, with its currency.
    pub fn unit_price(&self) -> Money {
        Money::new(self.price, self.currency.clone())
    }

    /// Rules every meal obeys, whoever sends it (beyond its typed fields).
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_text("name", &self.name, MAX_NAME_LEN, true)?;
        check_text("description", &self.description, MAX_TEXT_LEN, false)?;
        if !(1..=MAX_MEAL_PRICE_MINOR).contains(&self.price) {
            return Err(ValidationError::Price { field: "price" });
        }
        let n = &self.nutrition;
        for (field, v, max) in [
            ("nutrition.kcal", n.kcal, MAX_KCAL),
            ("nutrition.protein_mg", n.protein_mg, MAX_NUTRIENT_MG),
            ("nutrition.fat_mg", n.fat_mg, MAX_NUTRIENT_MG),
            ("nutrition.carbs_mg", n.carbs_mg, MAX_NUTRIENT_MG),
            ("nutrition.sugar_mg", n.sugar_mg, MAX_NUTRIENT_MG),
            ("nutrition.salt_mg", n.salt_mg, MAX_NUTRIENT_MG),
        ] {
            if v > max {
                return Err(ValidationError::TooLarge { field, max });
            }
        }
        if n.sugar_mg > n.carbs_mg {
            return Err(ValidationError::SugarExceedsCarbs);
        }
        check_list("allergens", &self.allergens)?;
        check_list("ingredients", &self.ingredients)?;
        check_list("tags", &self.tags)?;
        if !(1..=MAX_SHELF_LIFE_HOURS).contains(&self.shelf_life_hours) {
            return Err(ValidationError::NotBetweenOneAnd {
                field: "shelf_life_hours",
                max: MAX_SHELF_LIFE_HOURS,
            });
        }
        Ok(())
    }
}

/// Longest fridge secret, in bytes.
pub const MAX_SECRET_LEN: usize = 256;
/// Shortest fridge secret: HMAC keys shorter than this are guessable.
pub const MIN_SECRET_LEN: usize = 16;

impl FridgeSpec {
    pub fn validate(&self) -> Result<GeoPoint, ValidationError> {
        check_text("name", &self.name, MAX_NAME_LEN, true)?;
        check_text("address", &self.address, MAX_TEXT_LEN, false)?;
        ValidationError::check_id("vendor", &self.vendor)?;
        if let Some(secret) = &self.secret {
            if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
                return Err(ValidationError::Length {
                    field: "secret",
                    min: MIN_SECRET_LEN,
                    max: MAX_SECRET_LEN,
                });
            }
        }
        Ok(GeoPoint::new(self.lat, self.lon)?)
    }
}

impl StockSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.counts.is_empty() {
            return Err(ValidationError::NoCounts);
        }
        if self.counts.len() > MAX_LIST_ITEMS * 4 {
            return Err(ValidationError::TooManyCounts);
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.counts {
            if c.units > MAX_UNITS_PER_MEAL {
                return Err(ValidationError::TooLarge {
                    field: "units",
                    max: MAX_UNITS_PER_MEAL,
                });
            }
            if !seen.insert(c.meal_id.as_str()) {
                return Err(ValidationError::CountedTwice {
                    meal_id: c.meal_id.clone(),
                });
            }
        }
        Ok(())
    }
}
