//! The fleet: how district nodes find each other. A node registers its
//! district in the region directory (a JetStream KV bucket), keeps a local
//! copy of it, and routes what is not its own from that copy.
//!
//! - [`directory`]: the copy and the routing questions (pure).
//! - [`kv`]: joining, heartbeats, the watch and leaving, on NATS.
//!
//! Architecture Invariant: no district data crosses NATS here; only which
//! district serves which prefixes, and where.

pub mod directory;
pub mod kv;

pub use directory::Registration;
pub use kv::{join, Fleet, FleetError};
