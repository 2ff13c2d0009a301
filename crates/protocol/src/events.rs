//! Domain events: the facts a region appends to its log.
//!
//! Variants are append-only: postcard encodes the variant index, so a new
//! variant goes at the end and an existing one is never reordered or changed
//! in place (see [`crate::codec`] for how a changed shape gets a new schema
//! version and an upcaster).

use serde::{Deserialize, Serialize};

use crate::catalog::{Fridge, Meal};
use crate::{FridgeId, MealId};

/// Why a stock level was set to an absolute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockSource {
    /// An admin or kitchen correction through the API.
    Manual,
    /// A fridge inventory scan (through the fridge ACL).
    Scan,
}

/// Externally tagged on purpose: postcard cannot decode internally tagged
/// enums (they need a self-describing format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A meal was created or its definition replaced.
    MealDefined { meal: Meal },
    /// A meal left the catalog; open orders keep their snapshot.
    MealDiscontinued { meal_id: MealId },
    /// A fridge was registered or its registration updated.
    FridgeRegistered {
        fridge: Fridge,
        /// Present when the registration provisions or rotates the secret.
        secret: Option<String>,
    },
    /// Absolute units of a meal now in a fridge.
    MealStockUpdated {
        fridge_id: FridgeId,
        meal_id: MealId,
        on_hand: u32,
        source: StockSource,
    },
}

impl Event {
    /// The stream (aggregate) this event belongs to; per-stream versions are
    /// what optimistic concurrency checks.
    pub fn stream_id(&self) -> String {
        match self {
            Event::MealDefined { meal } => format!("meal-{}", meal.meal_id),
            Event::MealDiscontinued { meal_id } => format!("meal-{meal_id}"),
            Event::FridgeRegistered { fridge, .. } => format!("fridge-{}", fridge.fridge_id),
            Event::MealStockUpdated { fridge_id, .. } => format!("stock-{fridge_id}"),
        }
    }

    /// Short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::MealDefined { .. } => "MealDefined",
            Event::MealDiscontinued { .. } => "MealDiscontinued",
            Event::FridgeRegistered { .. } => "FridgeRegistered",
            Event::MealStockUpdated { .. } => "MealStockUpdated",
        }
    }
}
