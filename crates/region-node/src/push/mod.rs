//! Push to apps: the hub task that fans committed batches out to WebSocket
//! connections. What a batch means for subscribers (`changes`, `Interest`,
//! `cover`, message shapes and versions) is pure and lives in
//! [`district::push`]; it is re-exported here so the socket code names one
//! module.

pub mod hub;

pub use district::push::*;
