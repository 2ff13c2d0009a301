//! Restocking facts the district records: the par level an admin set for a
//! meal in a fridge (how many units of it the shelf should hold for general
//! sale when the kitchen's delivery arrives). See `district::restock` and
//! `docs/restocking.md`.
//!
//! Variants are append-only, like [`crate::Event`]'s (postcard encodes the
//! variant index).

use serde::{Deserialize, Serialize};

use crate::{FridgeId, MealId, StreamId};

/// Highest par level an admin may set, in units (a fridge shelf holds far
/// fewer; this bounds typos, not fridges).
pub const MAX_PAR_UNITS: u32 = 500;

/// What the district records for par levels (stream `restock-{fridge}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RestockEvent {
    /// The shelf should hold `units` (1..=[`MAX_PAR_UNITS`]) of the meal for
    /// general sale; replaces any earlier level.
    ParLevelSet {
        fridge_id: FridgeId,
        meal_id: MealId,
        units: u32,
    },
    /// The meal has no par level in the fridge any more.
    ParLevelCleared {
        fridge_id: FridgeId,
        meal_id: MealId,
    },
}

impl RestockEvent {
    pub fn stream(&self) -> StreamId {
        match self {
            RestockEvent::ParLevelSet { fridge_id, .. }
            | RestockEvent::ParLevelCleared { fridge_id, .. } => {
                StreamId::Restock(fridge_id.clone())
            }
        }
    }

    /// Short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RestockEvent::ParLevelSet { .. } => "ParLevelSet",
            RestockEvent::ParLevelCleared { .. } => "ParLevelCleared",
        }
    }
}
