//! Larder's fridge simulator, as a library: plays smart fridges in their
//! vendor dialects against a region node's
//! `POST /v1/fridges/{fridge_id}/telemetry`.
//!
//! The `fridge-sim` binary is a thin CLI over this; black-box tests and load
//! generators use it directly. It owns the *fridge side* of the telemetry
//! contract in `docs/fridge-dialects.md`; the node side (parsing, checking,
//! translating) is `fridge_acl`, which every body built here round-trips
//! through in the unit tests.
//!
//! - [`mod@encode`]: a [`fridge_acl::Batch`] written in a dialect;
//! - [`fridge`]: [`SimFridge`] (id, dialect, secret, report counter) and the
//!   [`SignedBatch`]es it builds, honest or deliberately wrong;
//! - [`client`]: [`send`] and the node's [`Answer`];
//! - [`demo`]: the demo district file as fridges to play;
//! - [`mod@run`]: normal operation of many fridges; [`mod@flood`]: load.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fridge_sim::SimError> {
//! use fridge_acl::{FridgeId, MealId};
//! use fridge_sim::{send, Dialect, SimFridge};
//! let id = FridgeId::from_static("f-corktown");
//! let mut fridge = SimFridge::new(id, Dialect::FrostlineJson, "secret");
//! let batch = fridge.scan(&[(MealId::from_static("m-kale-caesar"), 4)].into())?;
//! let answer = send(&reqwest::Client::new(), "http://127.0.0.1:8080", &batch).await?;
//! assert_eq!(answer.accepted().map(|a| a.applied), Some(1));
//! # Ok(()) }
//! ```

pub mod client;
pub mod demo;
pub mod encode;
pub mod flood;
pub mod fridge;
pub mod run;

pub use client::{
    register_fridge, send, telemetry_url, Accepted, Answer, SimError, Tally, STATUS_ACCEPTED,
};
pub use demo::{Demo, DemoFridge};
pub use encode::{encode, EncodeError};
pub use flood::{flood, FloodConfig, FloodReport};
pub use fridge::{check, milli_c_from_celsius, MealCounts, SignOptions, SignedBatch, SimFridge};
pub use fridge_acl::{Dialect, DoorActor};
pub use run::{resume_seq, run, RunConfig};
