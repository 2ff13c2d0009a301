//! Notification facts the district records itself (most notifications are
//! derived from other events: see `district::notifications`).
//!
//! Variants are append-only, like [`crate::Event`]'s (postcard encodes the
//! variant index).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::orders::OrderId;

/// Minutes in a day: quiet hours are minutes after district-local midnight.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// A customer's quiet hours in district-local time: pushes to their phone
/// that fall in `[start, end)` are held until `end`. `start > end` spans
/// midnight (22:00 to 07:00); `start == end` is refused (ambiguous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Minutes after local midnight, `0..MINUTES_PER_DAY`.
    pub start_minute: u16,
    pub end_minute: u16,
}

impl QuietHours {
    /// Parses `"HH:MM"` twice; `None` when either is not a time of day or
    /// both are the same.
    pub fn parse(start: &str, end: &str) -> Option<QuietHours> {
        let q = QuietHours {
            start_minute: minute_of_day(start)?,
            end_minute: minute_of_day(end)?,
        };
        (q.start_minute != q.end_minute).then_some(q)
    }

    /// Whether district-local `minute` (after midnight) is quiet.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }

    /// `"HH:MM"` of a minute of the day.
    pub fn format(minute: u16) -> String {
        format!("{:02}:{:02}", minute / 60, minute % 60)
    }
}

/// `"HH:MM"` (24 h, two digits each) as minutes after midnight.
fn minute_of_day(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// What the district records for notifications (stream `notifications`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NotificationEvent {
    /// The customer was reminded that `order_id` waits in its fridge until
    /// `pickup_deadline`. Recorded once per order (the timer asks, the
    /// decider records only orders not reminded yet), so a restart does not
    /// remind twice.
    PickupReminded {
        order_id: OrderId,
        customer: String,
        pickup_deadline: DateTime<Utc>,
    },
    /// The customer's quiet hours (`None`: none) from now on.
    QuietHoursSet {
        customer: String,
        quiet_hours: Option<QuietHours>,
    },
}

impl NotificationEvent {
    pub fn stream(&self) -> crate::StreamId {
        crate::StreamId::Notifications
    }

    pub fn kind(&self) -> &'static str {
        match self {
            NotificationEvent::PickupReminded { .. } => "PickupReminded",
            NotificationEvent::QuietHoursSet { .. } => "QuietHoursSet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_parse_and_span_midnight() {
        let q = QuietHours::parse("22:00", "07:00").unwrap();
        assert_eq!((q.start_minute, q.end_minute), (1320, 420));
        assert!(q.contains(1320) && q.contains(0) && q.contains(419));
        assert!(!q.contains(420) && !q.contains(1319));
        let day = QuietHours::parse("13:30", "14:00").unwrap();
        assert!(day.contains(810) && !day.contains(840) && !day.contains(0));
        for bad in [
            ("24:00", "07:00"),
            ("7:00", "08:00"),
            ("07:60", "08:00"),
            ("aa:bb", "01:00"),
            ("08:00", "08:00"),
            ("+1:00", "02:00"),
        ] {
            assert_eq!(QuietHours::parse(bad.0, bad.1), None, "{bad:?}");
        }
        assert_eq!(QuietHours::format(1320), "22:00");
    }
}
