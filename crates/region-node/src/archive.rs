//! The archive index (issue 15): the final view of every order the
//! district archived (`OrdersArchived`), so an order that left the
//! in-memory state is still served — `GET /v1/orders/{id}`, the order
//! lists and `/v1/me/orders` — with the body it had just before, and a
//! command naming it gets the answer it got then.
//!
//! Two sled trees in the log's database:
//! - `orders_archive`: order id → JSON [`ArchivedOrder`] (the API's
//!   `OrderView`, which only grows by optional fields, and its customer);
//! - `orders_archive_by_customer`: `len(customer) u16 BE ‖ customer ‖
//!   order id` → empty, for a customer's history newest first (ULID order
//!   ids sort by time).
//!
//! The writer computes the entries from the state just before it applies
//! `OrdersArchived` and hands them to [`crate::store::EventLog`] with the
//! batch: they are written before the log records and made durable by the
//! same flush and `fdatasync`. An entry written without its event (a crash
//! in between) is harmless: the order is still in memory, which is read
//! first, and the next decision writes the same entry again. A replay
//! through an `OrdersArchived` (a restore from a backup, a start without
//! snapshot) writes any entry that is missing ([`Archive::heal`]).
//!
//! Must not: be written by anything but the writer and start-up's replay.

use protocol::orders::{OrderId, OrderStatus, OrderView};
use serde::{Deserialize, Serialize};

use district::{DistrictState, Order};

pub const ARCHIVE_TREE: &str = "orders_archive";
pub const ARCHIVE_BY_CUSTOMER_TREE: &str = "orders_archive_by_customer";

/// What the index keeps of an archived order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedOrder {
    pub customer: String,
    /// The order as `GET /v1/orders/{id}` showed it to its owner.
    pub view: OrderView,
}

impl ArchivedOrder {
    pub fn of(order: &Order) -> ArchivedOrder {
        ArchivedOrder {
            customer: order.customer.clone(),
            view: crate::http::orders::view(order, true),
        }
    }

    pub fn status(&self) -> OrderStatus {
        self.view.status
    }
}

/// One entry to write, computed by the writer.
#[derive(Debug, Clone)]
pub struct Entry {
    order_id: OrderId,
    customer_key: Vec<u8>,
    value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("archived order {order_id} cannot be read: {source}")]
    Corrupt {
        order_id: String,
        source: serde_json::Error,
    },
    #[error("archived order cannot be encoded: {0}")]
    Encode(serde_json::Error),
}

fn customer_prefix(customer: &str) -> Vec<u8> {
    // Customer ids are token subjects, far below 64 KiB; a longer one
    // would only share a prefix with nobody.
    let len = u16::try_from(customer.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(2 + customer.len() + 26);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(customer.as_bytes());
    key
}

/// The entries for the orders `OrdersArchived` names, from the state
/// before it is applied (orders it does not hold are skipped, like the
/// event's handler skips them).
pub fn entries(state: &DistrictState, order_ids: &[OrderId]) -> Result<Vec<Entry>, ArchiveError> {
    order_ids
        .iter()
        .filter_map(|id| state.orders().get(id))
        .filter(|o| o.status.is_final())
        .map(|order| {
            let archived = ArchivedOrder::of(order);
            let mut customer_key = customer_prefix(&order.customer);
            customer_key.extend_from_slice(order.order_id.as_bytes());
            Ok(Entry {
                order_id: order.order_id.clone(),
                customer_key,
                value: serde_json::to_vec(&archived).map_err(ArchiveError::Encode)?,
            })
        })
        .collect()
}

/// The index: cheap to clone, read by the handlers, written through
/// [`Archive::write`] by the writer only.
#[derive(Clone)]
pub struct Archive {
    orders: sled::Tree,
    by_customer: sled::Tree,
}

impl Archive {
    pub fn open(db: &sled::Db) -> Result<Archive, sled::Error> {
        Ok(Archive {
            orders: db.open_tree(ARCHIVE_TREE)?,
            by_customer: db.open_tree(ARCHIVE_BY_CUSTOMER_TREE)?,
        })
    }

    /// Writes entries (not synced: the caller's flush and `fdatasync`
    /// covers them). The by-customer key goes first, so an order found by
    /// id is always listed too.
    pub fn write(&self, entries: &[Entry]) -> Result<(), sled::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut by_customer = sled::Batch::default();
        let mut orders = sled::Batch::default();
        for e in entries {
            by_customer.insert(e.customer_key.as_slice(), Vec::<u8>::new());
            orders.insert(e.order_id.as_bytes(), e.value.as_slice());
        }
        self.by_customer.apply_batch(by_customer)?;
        self.orders.apply_batch(orders)
    }

    /// During a replay: writes the entries of an `OrdersArchived` that
    /// the index lacks (a log restored from a backup). Not synced: the
    /// writer's first append syncs them, before any snapshot can cover
    /// the event; a crash before that replays the event again.
    pub fn heal(
        &self,
        state: &DistrictState,
        order_ids: &[OrderId],
    ) -> Result<usize, ArchiveError> {
        let mut missing = Vec::new();
        for id in order_ids {
            if !self.orders.contains_key(id.as_bytes())? {
                missing.push(id.clone());
            }
        }
        let entries = entries(state, &missing)?;
        self.write(&entries)?;
        Ok(entries.len())
    }

    /// The archived order, if `order_id` was archived. Blocking (a sled
    /// read, served from its cache for recent ones).
    pub fn get(&self, order_id: &str) -> Result<Option<ArchivedOrder>, ArchiveError> {
        let Some(bytes) = self.orders.get(order_id.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ArchiveError::Corrupt {
                order_id: order_id.to_string(),
                source,
            })
    }

    /// Archived orders newest first (by id), of one customer or everyone's,
    /// skipping those `skip` says are listed already, at most `limit`.
    pub fn newest(
        &self,
        customer: Option<&str>,
        limit: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Result<Vec<ArchivedOrder>, ArchiveError> {
        let ids: Box<dyn Iterator<Item = sled::Result<Vec<u8>>>> = match customer {
            None => Box::new(
                self.orders
                    .iter()
                    .keys()
                    .rev()
                    .map(|k| k.map(|k| k.to_vec())),
            ),
            Some(c) => {
                let prefix = customer_prefix(c);
                let at = prefix.len();
                Box::new(
                    self.by_customer
                        .scan_prefix(prefix)
                        .keys()
                        .rev()
                        .map(move |k| k.map(|k| k[at..].to_vec())),
                )
            }
        };
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            let id = String::from_utf8_lossy(&id?).into_owned();
            if skip(&id) {
                continue;
            }
            if let Some(order) = self.get(&id)? {
                out.push(order);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customers_prefix_never_lists_another_customers_orders() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let archive = Archive::open(&db).unwrap();
        // "ann" is a prefix of "anna": the length in front keeps them apart.
        for (customer, id) in [("ann", "01A"), ("anna", "01B"), ("ann", "01C")] {
            let mut key = customer_prefix(customer);
            key.extend_from_slice(id.as_bytes());
            archive.by_customer.insert(key, Vec::<u8>::new()).unwrap();
        }
        let ids: Vec<Vec<u8>> = archive
            .by_customer
            .scan_prefix(customer_prefix("ann"))
            .keys()
            .map(|k| k.unwrap()[5..].to_vec())
            .collect();
        assert_eq!(ids, vec![b"01A".to_vec(), b"01C".to_vec()]);
    }
}
