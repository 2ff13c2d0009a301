//! Demo data: a realistic downtown Detroit district (fridges at real places,
//! meals with full nutrition facts from three kitchens), loaded through the
//! same commands an admin would send.

use protocol::catalog::{FridgeSpec, MealSpec, StockSpec};
use serde::Deserialize;

use crate::domain::{CatalogCommand, Command};
use crate::writer::District;
use crate::NodeError;

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
    pub meal_id: String,
    #[serde(flatten)]
    pub spec: MealSpec,
}

#[derive(Debug, Deserialize)]
pub struct DemoFridge {
    pub fridge_id: String,
    #[serde(flatten)]
    pub spec: FridgeSpec,
}

#[derive(Debug, Deserialize)]
pub struct DemoStock {
    pub fridge_id: String,
    #[serde(flatten)]
    pub spec: StockSpec,
}

pub fn detroit() -> Result<DemoData, NodeError> {
    serde_json::from_str(DETROIT_JSON).map_err(|e| NodeError::Demo(e.to_string()))
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

/// Loads the demo district unless the log already has events.
pub async fn seed_if_empty(district: &District) -> Result<bool, NodeError> {
    if district.state().last_seq > 0 {
        return Ok(false);
    }
    for cmd in commands(detroit()?) {
        district
            .submit(cmd)
            .await
            .map_err(|e| NodeError::Demo(e.to_string()))?;
    }
    tracing::info!(events = district.state().last_seq, "demo district loaded");
    Ok(true)
}
