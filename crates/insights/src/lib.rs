//! The reporting projection (issue 13): what the committed log says about
//! orders, kitchens' units and fridges' temperature, per district-local day.
//!
//! Pure, like the district core: it folds committed event envelopes (their
//! seq and recorded time) and keeps only bounded aggregates; the node feeds
//! it from the writer's committed feed and reads reports off a published
//! clone. No clock, no IO. Definitions of every number: docs/insights.md.
//!
//! - [`projection`]: the fold ([`Projection::apply`]) and the published
//!   [`Aggregates`].
//! - [`day`]: one local day's counters, histograms and per-id rows.
//! - [`histogram`]: log-bucketed processing-time histograms.
//! - [`report`]: ranges and the report shapes (JSON).
//! - [`csv`]: one report section as CSV.
//! - [`fleet`]: the small daily aggregate a node publishes to the fleet.

pub mod csv;
pub mod day;
pub mod fleet;
pub mod histogram;
pub mod projection;
pub mod report;

pub use csv::{Section, SectionError};
pub use fleet::FleetDay;
pub use projection::{Aggregates, Projection, CELL_PRECISION_CHARS, MAX_DAYS_KEPT};
pub use report::{KitchenReport, Range, RangeError, Report, MAX_RANGE_DAYS};
