//! What links the district to each physical fridge: its telemetry secret
//! (and the one before a rotation), and the ACL's cursor over its reports.
//!
//! The cursor travels in the log as JSON (`FridgeTelemetryReceived`), in the
//! same batch as the events its report caused. An unreadable cursor is kept
//! as [`Cursor::Unreadable`] and refuses further reports with an error: a
//! silent reset would re-apply every report the fridge sends again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fridge_acl::FridgeCursor;
use imbl::{HashMap, Vector};
use protocol::{FridgeId, OrderId};
use serde::Serialize;

/// How many recent notices are kept per fridge (the log keeps them all).
pub const MAX_NOTICES_PER_FRIDGE: usize = 20;

/// A fact about a fridge kept for operators: not a state change, but
/// something a person should look at.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FridgeNotice {
    /// A valid pickup code opened the door and nothing was taken.
    PickupNothingTaken {
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    /// A pickup code the order book could not take.
    DoorPickupRefused { order_id: OrderId, reason: String },
    /// Back in range after an excursion.
    TemperatureRecovered {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        max_milli_c: i32,
    },
}

/// The ACL's position in one fridge's reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cursor {
    Known(#[serde(with = "crate::shared")] Arc<FridgeCursor>),
    /// The recorded cursor could not be read (a future format, say).
    Unreadable {
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FridgeLinks {
    secrets: HashMap<FridgeId, String>,
    /// The secret before the last rotation, until the fridge signs with the
    /// new one.
    previous_secrets: HashMap<FridgeId, String>,
    cursors: HashMap<FridgeId, Cursor>,
    /// The latest notices per fridge, oldest first.
    notices: HashMap<FridgeId, Vector<FridgeNotice>>,
}

impl FridgeLinks {
    /// The fridge's current telemetry secret; never served.
    pub fn secret(&self, fridge_id: &str) -> Option<&str> {
        self.secrets.get(fridge_id).map(String::as_str)
    }

    pub fn previous_secret(&self, fridge_id: &str) -> Option<&str> {
        self.previous_secrets.get(fridge_id).map(String::as_str)
    }

    pub fn cursor(&self, fridge_id: &str) -> Option<&Cursor> {
        self.cursors.get(fridge_id)
    }

    /// Fridges heard from, with their readable cursors.
    pub fn known_cursors(&self) -> impl Iterator<Item = (&FridgeId, &FridgeCursor)> {
        self.cursors.iter().filter_map(|(id, c)| match c {
            Cursor::Known(c) => Some((id, &**c)),
            Cursor::Unreadable { .. } => None,
        })
    }

    /// The fridge's latest notices, oldest first.
    pub fn notices(&self, fridge_id: &str) -> impl Iterator<Item = &FridgeNotice> {
        self.notices.get(fridge_id).into_iter().flatten()
    }

    pub(crate) fn notice(&mut self, fridge_id: &FridgeId, notice: FridgeNotice) {
        let mut list = self.notices.get(fridge_id).cloned().unwrap_or_default();
        list.push_back(notice);
        while list.len() > MAX_NOTICES_PER_FRIDGE {
            list.pop_front();
        }
        self.notices.insert(fridge_id.clone(), list);
    }

    /// A (re-)registration with a secret. On a rotation the old secret stays
    /// valid until the fridge signs with the new one.
    pub(crate) fn set_secret(&mut self, fridge_id: &FridgeId, secret: &str) {
        let old = self.secrets.insert(fridge_id.clone(), secret.to_string());
        if let Some(old) = old.filter(|old| old != secret) {
            self.previous_secrets.insert(fridge_id.clone(), old);
        }
    }

    /// A report was taken: the cursor after it, and whether the fridge has
    /// now used its new secret.
    pub(crate) fn record_report(
        &mut self,
        fridge_id: &FridgeId,
        cursor_json: &str,
        forget_previous: bool,
    ) {
        let cursor = match serde_json::from_str::<FridgeCursor>(cursor_json) {
            Ok(c) => Cursor::Known(Arc::new(c)),
            Err(e) => Cursor::Unreadable {
                reason: e.to_string(),
            },
        };
        self.cursors.insert(fridge_id.clone(), cursor);
        if forget_previous {
            self.previous_secrets.remove(fridge_id);
        }
    }

    /// An operator re-registered the fridge: a cursor that could not be
    /// read is dropped, so the fridge's next reports count as new.
    pub(crate) fn forget_unreadable_cursor(&mut self, fridge_id: &str) {
        if matches!(self.cursors.get(fridge_id), Some(Cursor::Unreadable { .. })) {
            self.cursors.remove(fridge_id);
        }
    }
}
