//! What the scheduler's tests share: the district's order book as the
//! schedule's events move it.

use protocol::orders::OrderStatus;
use protocol::schedule::ScheduleEvent;
use protocol::OrderId;

/// The status an order takes in the district's order book when `e` is
/// applied; `None` for events that move no order.
pub fn order_status(e: &ScheduleEvent) -> Option<(&OrderId, OrderStatus)> {
    Some(match e {
        ScheduleEvent::OrderScheduled { order_id, .. } => (order_id, OrderStatus::Scheduled),
        ScheduleEvent::OrderWithdrawn { order_id, .. } => (order_id, OrderStatus::Cancelled),
        ScheduleEvent::OrderPrepared { order_id } => (order_id, OrderStatus::Prepared),
        ScheduleEvent::OrderDispatched { order_id } => (order_id, OrderStatus::Dispatched),
        ScheduleEvent::OrderAvailableForPicking { order_id, .. } => {
            (order_id, OrderStatus::Available)
        }
        _ => return None,
    })
}
