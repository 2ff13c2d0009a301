//! Larder's fridge anti-corruption layer: vendor firmware payloads in,
//! domain facts out.
//!
//! Smart fridges speak their vendors' dialects, report late, twice and out of
//! order, and their clocks drift. This crate keeps all of that outside the
//! domain. It owns:
//!
//! - the dialects ([`frostline`], [`coldline`]) and the vendor-neutral
//!   [`Batch`] they parse into ([`report`]);
//! - authentication ([`auth`]): HMAC-SHA256 over timestamp and raw body,
//!   bounded skew, secret rotation;
//! - ordering ([`sequence`], [`stock`]): each report applied once, an older
//!   scan never overwriting a newer one, gaps noted;
//! - translation ([`mod@translate`]): reports plus a read-only view of the node
//!   become [`FridgeFact`]s.
//!
//! It is pure: bytes, state and `now` in; new state, facts and an answer
//! out. No IO, no clock, no async. The region node mounts it at
//! `POST /v1/fridges/{fridge_id}/telemetry`: [`authenticate`] in the
//! handler, [`translate`](translate()) in its writer against the current
//! state ([`receive`] does both in one call). It persists the returned
//! [`FridgeCursor`] together with the events it derives from the facts, and
//! answers `202` with the [`BatchOutcome`]. Wire formats and the signing
//! recipe are in `docs/fridge-dialects.md`.

pub mod auth;
pub mod coldline;
pub mod frostline;
pub mod report;
pub mod sequence;
pub mod stock;
pub mod translate;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

pub use auth::{check_fridge, sign, verify_signature, AuthError, SecretUsed, Secrets};
/// The id types batches and facts carry, so the fridge side (`fridge-sim`)
/// can build them from this crate alone.
pub use protocol::{FridgeId, IdError, MealId, OrderId};
pub use report::{Batch, DoorActor, DoorSession, ParseError, Problem, Report, ReportBody, Scan};
pub use sequence::{SeqRange, SequenceState};
pub use translate::{
    check_silence, translate, BatchOutcome, FridgeCursor, FridgeFact, FridgeView, MealUnits,
    OpenOrder, ShrinkageReason, StockCause, TemperaturePolicy, Translation,
};

/// The firmware dialect a fridge is registered with (its `vendor` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    FrostlineJson,
    ColdlineLines,
}

impl Dialect {
    pub const ALL: [Dialect; 2] = [Dialect::FrostlineJson, Dialect::ColdlineLines];

    /// The registered vendor string.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::FrostlineJson => frostline::VENDOR,
            Dialect::ColdlineLines => coldline::VENDOR,
        }
    }

    /// The `Content-Type` firmware of this dialect sends.
    pub fn content_type(self) -> &'static str {
        match self {
            Dialect::FrostlineJson => "application/json",
            Dialect::ColdlineLines => "text/plain",
        }
    }

    pub fn parse(self, body: &[u8]) -> Result<Batch, ParseError> {
        match self {
            Dialect::FrostlineJson => frostline::parse(body),
            Dialect::ColdlineLines => coldline::parse(body),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fridge dialect {0:?}; known: frostline-json, coldline-lines")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDialect(s.to_string()))
    }
}

/// One telemetry upload as the HTTP layer received it.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// `{fridge_id}` from the URL: whose secret and cursor were looked up.
    pub fridge_id: &'a str,
    pub dialect: Dialect,
    pub body: &'a [u8],
    /// The `x-larder-timestamp` header ("" if absent).
    pub timestamp: &'a str,
    /// The `x-larder-signature` header ("" if absent).
    pub signature: &'a str,
}

/// Why an upload was refused. Nothing changed; the cursor is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

impl Rejection {
    /// 401/403 for authentication, 400/413 for the payload.
    pub fn http_status(&self) -> u16 {
        match self {
            Rejection::Auth(e) => e.http_status(),
            Rejection::Parse(e) => e.http_status(),
        }
    }

    /// Stable machine-readable code for the `{"error":{"code"}}` body.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Auth(AuthError::WrongFridge { .. }) => "wrong_fridge",
            Rejection::Auth(AuthError::Skew { .. }) => "clock_skew",
            Rejection::Auth(_) => "unauthenticated",
            Rejection::Parse(ParseError::TooLarge { .. }) => "payload_too_large",
            Rejection::Parse(_) => "invalid_telemetry",
        }
    }
}

/// An accepted upload: what to persist, what to append, what to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub translation: Translation,
    /// Which secret signed it: on `Current` the node may drop the previous.
    pub secret_used: SecretUsed,
}

/// The checks before translation, in the order that keeps a forged or
/// malformed batch from costing anything: size, signature (before any
/// parsing), syntax, fridge identity. Needs no state but the secrets, so an
/// adapter can run it in parallel and translate later against fresh state.
pub fn authenticate(
    upload: &Upload<'_>,
    secrets: &Secrets<'_>,
    now: DateTime<Utc>,
) -> Result<(Batch, SecretUsed), Rejection> {
    if upload.body.len() > report::MAX_BATCH_BYTES {
        return Err(ParseError::TooLarge {
            len: upload.body.len(),
        }
        .into());
    }
    let secret_used = verify_signature(
        secrets,
        upload.body,
        upload.timestamp,
        upload.signature,
        now,
    )?;
    let batch = upload.dialect.parse(upload.body)?;
    check_fridge(upload.fridge_id, &batch)?;
    Ok((batch, secret_used))
}

/// The whole pipeline for one upload: [`authenticate`], then translation.
pub fn receive(
    upload: &Upload<'_>,
    secrets: &Secrets<'_>,
    cursor: &FridgeCursor,
    view: &FridgeView,
    now: DateTime<Utc>,
) -> Result<Received, Rejection> {
    let (batch, secret_used) = authenticate(upload, secrets, now)?;
    Ok(Received {
        translation: translate(cursor, view, &batch, now),
        secret_used,
    })
}
