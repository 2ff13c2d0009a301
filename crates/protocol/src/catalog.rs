//! Catalog and stock: meals, fridges, stock levels, and the catalog view the
//! app reads. Specs (`MealSpec`, `FridgeSpec`) are what an admin sends; they are
//! validated here so every adapter applies the same rules.

use serde::{Deserialize, Serialize};

use crate::geo::GeoPoint;
use crate::money::{Currency, MAX_MEAL_PRICE_MINOR};
use crate::{FridgeId, KitchenId, MealId};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
}

impl StockLevel {
    /// Units a customer may still buy; never negative.
    pub fn available(&self) -> u32 {
        self.on_hand
            .saturating_sub(self.reserved)
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
    pub district_id: String,
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
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > max {
        return Err(format!("{field} must be at most {max} bytes"));
    }
    Ok(())
}

fn check_list(field: &str, items: &[String]) -> Result<(), String> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(format!("{field} may have at most {MAX_LIST_ITEMS} entries"));
    }
    for item in items {
        check_text(field, item, MAX_NAME_LEN, true)?;
    }
    Ok(())
}

impl MealSpec {
    /// Rules every meal obeys, whoever sends it.
    pub fn validate(&self) -> Result<(), String> {
        check_text("name", &self.name, MAX_NAME_LEN, true)?;
        check_text("description", &self.description, MAX_TEXT_LEN, false)?;
        crate::validate_id(&self.kitchen_id).map_err(|e| format!("kitchen_id: {e}"))?;
        if !(1..=MAX_MEAL_PRICE_MINOR).contains(&self.price) {
            return Err(format!(
                "price must be between 1 and {MAX_MEAL_PRICE_MINOR} minor units"
            ));
        }
        let n = &self.nutrition;
        if n.kcal > MAX_KCAL {
            return Err(format!("nutrition.kcal must be at most {MAX_KCAL}"));
        }
        for (field, v) in [
            ("protein_mg", n.protein_mg),
            ("fat_mg", n.fat_mg),
            ("carbs_mg", n.carbs_mg),
            ("sugar_mg", n.sugar_mg),
            ("salt_mg", n.salt_mg),
        ] {
            if v > MAX_NUTRIENT_MG {
                return Err(format!(
                    "nutrition.{field} must be at most {MAX_NUTRIENT_MG}"
                ));
            }
        }
        if n.sugar_mg > n.carbs_mg {
            return Err("nutrition.sugar_mg cannot exceed carbs_mg".into());
        }
        check_list("allergens", &self.allergens)?;
        check_list("ingredients", &self.ingredients)?;
        check_list("tags", &self.tags)?;
        if !(1..=MAX_SHELF_LIFE_HOURS).contains(&self.shelf_life_hours) {
            return Err(format!(
                "shelf_life_hours must be between 1 and {MAX_SHELF_LIFE_HOURS}"
            ));
        }
        Ok(())
    }
}

/// Longest fridge secret, in bytes.
pub const MAX_SECRET_LEN: usize = 256;
/// Shortest fridge secret: HMAC keys shorter than this are guessable.
pub const MIN_SECRET_LEN: usize = 16;

impl FridgeSpec {
    pub fn validate(&self) -> Result<GeoPoint, String> {
        check_text("name", &self.name, MAX_NAME_LEN, true)?;
        check_text("address", &self.address, MAX_TEXT_LEN, false)?;
        crate::validate_id(&self.vendor).map_err(|e| format!("vendor: {e}"))?;
        if let Some(secret) = &self.secret {
            if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
                return Err(format!(
                    "secret must be {MIN_SECRET_LEN}..={MAX_SECRET_LEN} bytes"
                ));
            }
        }
        GeoPoint::new(self.lat, self.lon).map_err(|e| e.to_string())
    }
}

impl StockSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.counts.is_empty() {
            return Err("counts must list at least one meal".into());
        }
        if self.counts.len() > MAX_LIST_ITEMS * 4 {
            return Err("too many counts in one correction".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.counts {
            crate::validate_id(&c.meal_id).map_err(|e| format!("meal_id: {e}"))?;
            if c.units > MAX_UNITS_PER_MEAL {
                return Err(format!("units must be at most {MAX_UNITS_PER_MEAL}"));
            }
            if !seen.insert(c.meal_id.as_str()) {
                return Err(format!("meal {} is listed twice", c.meal_id));
            }
        }
        Ok(())
    }
}
