//! Back-in-stock waitlists: the log's events and the API's shapes.
//!
//! A customer waits for a meal at a fridge (or at any fridge near a
//! point); when units become available the waiting customers are offered
//! short holds in order of arrival, one unit each, as many as there are
//! units. A hold takes its unit off sale (`StockLevel::held`) until it is
//! used by an order, lapses or is given back, so no unit is ever held for
//! two customers or held and sold at once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::orders::OrderId;
use crate::{FridgeId, MealId, StreamId, ValidationError, WaitlistId};

/// Most fridges one entry waits at (an area is cut to its nearest).
pub const MAX_WAITLIST_FRIDGES: usize = 10;
/// Largest radius of an area to wait in, in metres.
pub const MAX_WAITLIST_RADIUS_M: u32 = 5_000;

/// Variants are append-only (postcard encodes the index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WaitlistEvent {
    /// `customer` waits for `meal_id` at `fridges` (nearest first) until
    /// `expires_at`.
    Joined {
        entry_id: WaitlistId,
        customer: String,
        meal_id: MealId,
        fridges: Vec<FridgeId>,
        expires_at: DateTime<Utc>,
    },
    /// The customer left the list; a hold they had goes back on sale.
    Left { entry_id: WaitlistId },
    /// The entry's time ran out while it waited.
    Expired { entry_id: WaitlistId },
    /// One unit at `fridge_id` is held for the entry's customer until
    /// `until`: off sale for everyone else.
    HoldOffered {
        entry_id: WaitlistId,
        fridge_id: FridgeId,
        meal_id: MealId,
        until: DateTime<Utc>,
    },
    /// The hold ran out unused: its unit is on sale again (and offered to
    /// the next in line, if any).
    HoldLapsed { entry_id: WaitlistId },
    /// The customer ordered with the hold: its unit is the order's now
    /// (the order's `MealStockReserved` follows in the same batch).
    HoldUsed {
        entry_id: WaitlistId,
        order_id: OrderId,
    },
}

impl WaitlistEvent {
    pub fn entry_id(&self) -> &WaitlistId {
        match self {
            WaitlistEvent::Joined { entry_id, .. }
            | WaitlistEvent::Left { entry_id }
            | WaitlistEvent::Expired { entry_id }
            | WaitlistEvent::HoldOffered { entry_id, .. }
            | WaitlistEvent::HoldLapsed { entry_id }
            | WaitlistEvent::HoldUsed { entry_id, .. } => entry_id,
        }
    }

    pub fn stream(&self) -> StreamId {
        StreamId::Waitlist(self.entry_id().clone())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            WaitlistEvent::Joined { .. } => "WaitlistJoined",
            WaitlistEvent::Left { .. } => "WaitlistLeft",
            WaitlistEvent::Expired { .. } => "WaitlistExpired",
            WaitlistEvent::HoldOffered { .. } => "WaitlistHoldOffered",
            WaitlistEvent::HoldLapsed { .. } => "WaitlistHoldLapsed",
            WaitlistEvent::HoldUsed { .. } => "WaitlistHoldUsed",
        }
    }
}

/// An area to wait in: fridges within `radius_m` of a point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Near {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: u32,
}

/// Body of `POST /v1/waitlist`: one of `fridge_id` and `near`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlist {
    pub meal_id: MealId,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validation::not_null"
    )]
    pub fridge_id: Option<FridgeId>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validation::not_null"
    )]
    pub near: Option<Near>,
}

impl JoinWaitlist {
    pub fn validate(&self) -> Result<(), ValidationError> {
        match (&self.fridge_id, &self.near) {
            (Some(_), None) => Ok(()),
            (None, Some(near)) => {
                crate::geo::GeoPoint::new(near.lat, near.lon)?;
                if !(1..=MAX_WAITLIST_RADIUS_M).contains(&near.radius_m) {
                    return Err(ValidationError::NotBetweenOneAnd {
                        field: "near.radius_m",
                        max: MAX_WAITLIST_RADIUS_M,
                    });
                }
                Ok(())
            }
            _ => Err(ValidationError::OneOf {
                fields: "fridge_id, near",
            }),
        }
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitlistStatus {
    Waiting,
    /// A unit is held for the customer (`hold`).
    Held,
    /// The customer ordered with the hold (`order_id`).
    Ordered,
    /// The hold ran out unused.
    Lapsed,
    /// The entry ran out its time while waiting.
    Expired,
    /// The customer left the list.
    Left,
}

/// A hold as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub fridge_id: FridgeId,
    pub until: DateTime<Utc>,
}

/// One entry as its customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistEntryView {
    pub entry_id: WaitlistId,
    pub meal_id: MealId,
    pub fridges: Vec<FridgeId>,
    pub status: WaitlistStatus,
    /// 1 for the first in line for the meal (waiting entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    pub joined_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
}
