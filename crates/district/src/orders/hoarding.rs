//! Reservation hoarding: an app order reserves stock the moment it is
//! placed, and cancelling in the grace window costs nothing. Without a
//! bound a customer can keep a fridge's last units away from everyone by
//! placing and cancelling in a loop. Two rules, both per customer and for
//! app orders only (a POS terminal's `sub` is the till, not a person):
//!
//! - at most [`HoldPolicy::max_held_orders`] orders in their grace window
//!   at once;
//! - after [`HoldPolicy::free_cancels_per_meal`] grace-window cancels of
//!   orders with the same meal inside [`HoldPolicy::free_cancel_window`],
//!   that meal cannot be held again until the oldest of those cancels
//!   leaves the window.
//!
//! Both refusals say how long to wait. The scan reads only the customer's
//! orders placed inside the look-back (newest first), so its cost does not
//! grow with a long order history.

use chrono::{DateTime, Duration, Utc};
use protocol::orders::OrderStatus;
use protocol::MealId;

use super::book::{Order, OrderBook};
use crate::DomainError;

/// Orders one customer may hold in their grace window at once, by default.
pub const MAX_HELD_ORDERS_DEFAULT: u32 = 3;
/// Grace-window cancels of one meal allowed in the window, by default.
pub const FREE_CANCELS_PER_MEAL_DEFAULT: u32 = 3;
/// The window those cancels are counted in, in seconds (10 minutes).
pub const FREE_CANCEL_WINDOW_DEFAULT_SECS: u32 = 600;
/// How far back the scan looks beyond the cancel window, so an order still
/// held after a long grace window (or a node restart) is counted.
const HELD_LOOKBACK_MARGIN_SECS: i64 = 3600;

/// The hoarding rules from the node's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    pub max_held_orders: u32,
    pub free_cancels_per_meal: u32,
    pub free_cancel_window: Duration,
}

impl Default for HoldPolicy {
    fn default() -> Self {
        HoldPolicy {
            max_held_orders: MAX_HELD_ORDERS_DEFAULT,
            free_cancels_per_meal: FREE_CANCELS_PER_MEAL_DEFAULT,
            free_cancel_window: Duration::seconds(FREE_CANCEL_WINDOW_DEFAULT_SECS.into()),
        }
    }
}

/// Whether `customer` may hold a new app order for `meals` at `now`.
pub fn check(
    book: &OrderBook,
    customer: &str,
    meals: &[&MealId],
    now: DateTime<Utc>,
    policy: &HoldPolicy,
) -> Result<(), DomainError> {
    let since = now - policy.free_cancel_window - Duration::seconds(HELD_LOOKBACK_MARGIN_SECS);
    let recent: Vec<&Order> = book
        .of_customer(customer)
        .rev()
        .take_while(|o| placed_at(o).is_none_or(|at| at >= since))
        .collect();
    let held: Vec<&Order> = recent
        .iter()
        .copied()
        .filter(|o| o.status == OrderStatus::Held)
        .collect();
    if held.len() >= policy.max_held_orders as usize {
        let first_free = held.iter().map(|o| o.hold_until).min().unwrap_or(now);
        return Err(DomainError::TooManyHeldOrders {
            max: policy.max_held_orders,
            retry_after_secs: (first_free - now).num_seconds().max(1),
        });
    }
    for meal in meals {
        let mut cancels: Vec<DateTime<Utc>> = recent
            .iter()
            .filter(|o| o.lines.iter().any(|l| &l.meal_id == *meal))
            .filter_map(|o| free_cancel_at(o))
            .filter(|at| *at > now - policy.free_cancel_window)
            .collect();
        let allowed = policy.free_cancels_per_meal as usize;
        if allowed > 0 && cancels.len() >= allowed {
            cancels.sort_unstable_by(|a, b| b.cmp(a));
            let frees_up = cancels[allowed - 1] + policy.free_cancel_window;
            return Err(DomainError::CancelCooldown {
                meal_id: (*meal).clone(),
                retry_after_secs: (frees_up - now).num_seconds().max(1),
            });
        }
    }
    Ok(())
}

fn placed_at(order: &Order) -> Option<DateTime<Utc>> {
    order.history.first().map(|c| c.at)
}

/// When `order` was cancelled from its grace window, if it was.
fn free_cancel_at(order: &Order) -> Option<DateTime<Utc>> {
    if order.status != OrderStatus::Cancelled {
        return None;
    }
    let mut changes = order.history.iter().rev();
    let cancelled = changes.next()?;
    let before = changes.next()?;
    (before.status == OrderStatus::Held).then_some(cancelled.at)
}
