//! The global payments service.
//!
//! Consumes payment requests from every district over NATS JetStream, charges
//! or refunds through a [`provider::Provider`], records each outcome durably in
//! its own sled [`book::Book`] before publishing the result, and answers a
//! redelivered or replayed request with the recorded outcome — so an order is
//! charged at most once whatever JetStream, restarts or nodes do. JetStream's
//! duplicate window (2 min) is only the first line of defence; the book is the
//! one that holds.
//!
//! - [`book`]: the durable record of outcomes, keyed by request id.
//! - [`backup`]: the book as a verified archive, and back.
//! - [`provider`]: the processor port and the sandbox provider.
//! - [`service`]: the consume → decide → record → publish → ack loop.
//! - [`http`]: read-only operator API (health, ledger per order).

pub mod backup;
pub mod book;
pub mod http;
pub mod provider;
pub mod service;
