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
//! Several instances may share the request consumer; each keeps its own
//! book, so across instances the guard against a second charge is the
//! processor's idempotency key (the order id), as with a real processor:
//! they must share one processor (`--processor-url`, e.g. `payments
//! sandbox-processor`). See [`service`].
//!
//! - [`book`]: the durable record of outcomes, keyed by request id.
//! - [`backup`]: the book as a verified archive, and back.
//! - [`provider`]: the processor port and the sandbox provider.
//! - [`processor`]: the sandbox as a service of its own
//!   (`payments sandbox-processor`), for several instances to share.
//! - [`remote`]: the processor port over HTTP (`--processor-url`).
//! - [`service`]: the consume → decide → record → publish → ack loop, in
//!   batches.
//! - [`http`]: read-only operator API (health, ledger per order).

pub mod backup;
pub mod book;
pub mod http;
pub mod processor;
pub mod provider;
pub mod remote;
pub mod service;
