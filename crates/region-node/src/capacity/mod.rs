//! The capacity planner behind `region-node capacity`: storage per
//! district per year and network bandwidth per channel, from what each
//! flow (an app order, a till order, a pickup, a plan day, a fridge
//! upload, ...) really costs in bytes times how often it happens.
//!
//! - [`measure`] runs every flow through the real district core and
//!   encoders and returns [`Sizes`] (measured, never typed in);
//!   [`disk`] measures sled's bytes on disk per byte of log record.
//! - [`plan`] is pure: a [`Scenario`] (users, subscribers, fridges, rates,
//!   growth) and the [`Sizes`] in, a [`Plan`] out (per day, per year).
//! - [`table`] renders a plan for people; `--format json` serializes it.
//!
//! Retention follows the node: the event log is the system of record and
//! is never compacted (ARCHITECTURE.md, "Snapshots", "Backup, restore and
//! export"), so the log grows by everything written, forever; two state
//! snapshots are kept beside it. `retention_years` models an archive
//! policy the node does not have yet (older years moved off the node).

pub mod disk;
pub mod measure;
pub mod table;

use serde::{Deserialize, Serialize};

/// Days per year in forecasts.
pub const DAYS_PER_YEAR: f64 = 365.0;
const SECS_PER_DAY: f64 = 86_400.0;
/// Snapshots kept on disk (`[snapshots] keep`, default 2).
pub const SNAPSHOTS_KEPT: f64 = 2.0;
/// Bytes a sealed segment spends per record beyond the record: its 16-byte
/// head and the index's 16 bytes per 1,024 records (`store::sealed`).
pub const SEALED_BYTES_PER_RECORD: f64 = 16.0 + 16.0 / 1_024.0;
/// Records that stay in sled at most: one snapshot interval and one
/// segment not yet sealed (default settings). Older ones are sealed.
pub const SLED_TAIL_RECORDS: f64 =
    (crate::config::SNAPSHOT_EVERY_EVENTS_DEFAULT + crate::store::SEGMENT_RECORDS_DEFAULT) as f64;

/// What a city looks like and how it behaves. Every field has a default
/// (the demo city); a TOML file or flags override them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub name: String,
    /// Districts (region nodes) the city is split into; users, subscribers
    /// and fridges are spread evenly over them.
    pub districts: u64,
    /// Customers who order (app or till) in year 1, city-wide.
    pub users: u64,
    /// Subscribers on weekly plans in year 1, city-wide.
    pub subscribers: u64,
    /// Fridges in year 1, city-wide.
    pub fridges: u64,
    /// One-off orders per user per day (app and till).
    pub orders_per_user_per_day: f64,
    /// Share of one-off orders placed in the app (the rest at a till).
    pub app_share: f64,
    /// Share of app orders cancelled in the grace window.
    pub cancel_share: f64,
    /// Share of paid orders collected through the fridge's door (a
    /// pickup-code door session); the rest expire unclaimed.
    pub pickup_share: f64,
    /// Plan days per subscriber per week.
    pub plan_days_per_week: f64,
    /// Full catalog answers an app fetches per order placed (browsing).
    pub catalog_reads_per_order: f64,
    /// WebSocket connections following each fridge (or an area covering
    /// it) at any time.
    pub watchers_per_fridge: f64,
    /// Seconds between a fridge's uploads (each carries a temperature).
    pub telemetry_interval_secs: u64,
    /// A full inventory scan every this many uploads (`fridge-sim`: 6).
    pub scan_every_uploads: u64,
    /// Kitchen refills per fridge per day (staff door sessions).
    pub restocks_per_fridge_per_day: f64,
    /// Busiest hour's traffic over the day's average (lunch).
    pub peak_to_average: f64,
    /// Users and subscribers multiply by this every year.
    pub user_growth_per_year: f64,
    /// Fridges multiply by this every year.
    pub fridge_growth_per_year: f64,
    /// Years forecast.
    pub years: u32,
    /// Years of log kept on the node; `None`: forever (what the node does).
    pub retention_years: Option<u32>,
}

impl Default for Scenario {
    /// The demo city: downtown Detroit's 12 fridges and 30 meals from 3
    /// kitchens (`deploy/demo/detroit.json`); users and rates assumed
    /// (docs/capacity.md says why).
    fn default() -> Self {
        Scenario {
            name: "demo city (downtown Detroit)".into(),
            districts: 1,
            users: 2_000,
            subscribers: 100,
            fridges: 12,
            orders_per_user_per_day: 0.2,
            app_share: 0.8,
            cancel_share: 0.05,
            pickup_share: 0.95,
            plan_days_per_week: 5.0,
            catalog_reads_per_order: 3.0,
            watchers_per_fridge: 3.0,
            telemetry_interval_secs: 60,
            scan_every_uploads: 6,
            restocks_per_fridge_per_day: 2.0,
            peak_to_average: 4.0,
            user_growth_per_year: 2.0,
            fridge_growth_per_year: 1.5,
            years: 3,
            retention_years: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScenarioError {
    #[error("{field} must be {rule}, got {value}")]
    OutOfRange {
        field: &'static str,
        rule: &'static str,
        value: f64,
    },
}

impl Scenario {
    /// Refuses a scenario the model cannot answer (shares outside 0..=1,
    /// no district, ...).
    pub fn check(&self) -> Result<(), ScenarioError> {
        let share = |field, value: f64| {
            ((0.0..=1.0).contains(&value))
                .then_some(())
                .ok_or(ScenarioError::OutOfRange {
                    field,
                    rule: "between 0 and 1",
                    value,
                })
        };
        let non_negative = |field, value: f64| {
            (value.is_finite() && value >= 0.0)
                .then_some(())
                .ok_or(ScenarioError::OutOfRange {
                    field,
                    rule: "a number >= 0",
                    value,
                })
        };
        let at_least_one = |field, value: f64| {
            (value >= 1.0)
                .then_some(())
                .ok_or(ScenarioError::OutOfRange {
                    field,
                    rule: ">= 1",
                    value,
                })
        };
        share("app_share", self.app_share)?;
        share("cancel_share", self.cancel_share)?;
        share("pickup_share", self.pickup_share)?;
        non_negative("orders_per_user_per_day", self.orders_per_user_per_day)?;
        non_negative("catalog_reads_per_order", self.catalog_reads_per_order)?;
        non_negative("watchers_per_fridge", self.watchers_per_fridge)?;
        non_negative(
            "restocks_per_fridge_per_day",
            self.restocks_per_fridge_per_day,
        )?;
        at_least_one("districts", self.districts as f64)?;
        at_least_one(
            "telemetry_interval_secs",
            self.telemetry_interval_secs as f64,
        )?;
        at_least_one("scan_every_uploads", self.scan_every_uploads as f64)?;
        at_least_one("peak_to_average", self.peak_to_average)?;
        at_least_one("years", f64::from(self.years))?;
        non_negative("user_growth_per_year", self.user_growth_per_year)?;
        non_negative("fridge_growth_per_year", self.fridge_growth_per_year)?;
        if !(0.0..=7.0).contains(&self.plan_days_per_week) {
            return Err(ScenarioError::OutOfRange {
                field: "plan_days_per_week",
                rule: "between 0 and 7",
                value: self.plan_days_per_week,
            });
        }
        Ok(())
    }
}

/// What one occurrence of a flow costs, in bytes (averages, so fractions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Log records appended.
    pub log_records: f64,
    /// Their encoded size (`protocol::codec` record, header included).
    pub log_record_bytes: f64,
    /// Growth of the state a snapshot holds.
    pub state_bytes: f64,
    /// HTTP requests from apps, tills and kitchens.
    pub api_requests: f64,
    /// Their JSON bodies, request and answer.
    pub api_bytes: f64,
    /// WebSocket frames to each connection following the fridge.
    pub push_fridge_bytes: f64,
    /// WebSocket frames to the order's customer.
    pub push_customer_bytes: f64,
    /// WebSocket frames to every connection (`catalog_updated`).
    pub push_district_bytes: f64,
    /// The same three as frame counts.
    pub push_fridge_frames: f64,
    pub push_customer_frames: f64,
    pub push_district_frames: f64,
    /// Fridge uploads.
    pub telemetry_requests: f64,
    /// Their bodies, signature headers and the node's answers.
    pub telemetry_bytes: f64,
    /// Payment requests and results on NATS.
    pub nats_messages: f64,
    pub nats_bytes: f64,
}

impl Cost {
    pub fn scaled(self, k: f64) -> Cost {
        Cost {
            log_records: self.log_records * k,
            log_record_bytes: self.log_record_bytes * k,
            state_bytes: self.state_bytes * k,
            api_requests: self.api_requests * k,
            api_bytes: self.api_bytes * k,
            push_fridge_bytes: self.push_fridge_bytes * k,
            push_customer_bytes: self.push_customer_bytes * k,
            push_district_bytes: self.push_district_bytes * k,
            push_fridge_frames: self.push_fridge_frames * k,
            push_customer_frames: self.push_customer_frames * k,
            push_district_frames: self.push_district_frames * k,
            telemetry_requests: self.telemetry_requests * k,
            telemetry_bytes: self.telemetry_bytes * k,
            nats_messages: self.nats_messages * k,
            nats_bytes: self.nats_bytes * k,
        }
    }
}

/// The measured cost of every flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizes {
    /// Confirm, grace window, charge, result, loyalty, the app reading
    /// its pickup code.
    pub app_order: Cost,
    /// An app order cancelled in its grace window.
    pub app_cancel: Cost,
    /// A till order, confirmed and paid.
    pub pos_order: Cost,
    /// A paid order collected: the door session upload and what follows.
    pub pickup: Cost,
    /// One delivered plan day (its share of the plan and weekly charge, the
    /// tick, three kitchen stages, the pickup).
    pub plan_day: Cost,
    /// A fridge upload carrying one temperature sample.
    pub temperature_upload: Cost,
    /// A fridge upload carrying a full scan.
    pub scan_upload: Cost,
    /// A staff refill door session.
    pub restock: Cost,
    /// One full `GET /v1/catalog` answer.
    pub catalog_read: Cost,
    /// sled's space on disk, if measured.
    pub disk: Option<disk::DiskFactor>,
}

/// How often each flow happens in one district, per day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowsPerDay {
    pub app_orders: f64,
    pub app_cancels: f64,
    pub pos_orders: f64,
    pub pickups: f64,
    pub plan_days: f64,
    pub temperature_uploads: f64,
    pub scan_uploads: f64,
    pub restocks: f64,
    pub catalog_reads: f64,
    /// WebSocket connections open at a time.
    pub connections: f64,
}

/// Traffic on one channel of one district.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Requests or messages per day.
    pub messages_per_day: f64,
    pub bytes_per_day: f64,
    pub average_bytes_per_sec: f64,
    /// The busiest hour's rate (`peak_to_average` × average).
    pub peak_bytes_per_sec: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Channels {
    /// HTTP JSON bodies of apps, tills and kitchens.
    pub app_api: Bandwidth,
    /// Frames the node sends over WebSockets.
    pub websocket_push: Bandwidth,
    /// Fridge uploads and the node's answers.
    pub fridge_telemetry: Bandwidth,
    /// Payment requests and results (this district's share).
    pub nats: Bandwidth,
}

/// One forecast year, per district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YearPlan {
    pub year: u32,
    pub users: f64,
    pub subscribers: f64,
    pub fridges: f64,
    pub flows_per_day: FlowsPerDay,
    pub log_records_per_day: f64,
    pub log_record_bytes_per_day: f64,
    /// Log record bytes written during the year.
    pub log_record_bytes_written: f64,
    /// Log record bytes kept on the node at the year's end.
    pub log_record_bytes_kept: f64,
    /// Log records kept on the node at the year's end.
    pub log_records_kept: f64,
    /// The same on disk: the sealed records at their size plus
    /// [`SEALED_BYTES_PER_RECORD`], the tail still in sled
    /// ([`SLED_TAIL_RECORDS`]) with sled's measured space factor (None
    /// when not measured).
    pub log_disk_bytes_kept: Option<f64>,
    /// The snapshots kept at the year's end (state size × kept).
    pub snapshot_bytes: f64,
    pub channels: Channels,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    pub sizes: Sizes,
    /// Year 1..=years, per district.
    pub years: Vec<YearPlan>,
}

/// The forecast for `scenario` from the measured `sizes`. Pure.
pub fn plan(scenario: &Scenario, sizes: &Sizes) -> Plan {
    let mut years = Vec::new();
    // (record bytes, records) written each year.
    let mut kept_by_year: Vec<(f64, f64)> = Vec::new();
    let mut state_bytes = 0.0;
    for year in 1..=scenario.years {
        let mut y = year_plan(scenario, sizes, year);
        kept_by_year.push((
            y.log_record_bytes_written,
            y.log_records_per_day * DAYS_PER_YEAR,
        ));
        let window = scenario
            .retention_years
            .map_or(kept_by_year.len(), |r| (r as usize).min(kept_by_year.len()));
        let kept = &kept_by_year[kept_by_year.len() - window..];
        y.log_record_bytes_kept = kept.iter().map(|k| k.0).sum();
        y.log_records_kept = kept.iter().map(|k| k.1).sum();
        y.log_disk_bytes_kept = sizes.disk.map(|d| log_on_disk(&y, d));
        state_bytes += state_growth_per_day(sizes, &y.flows_per_day) * DAYS_PER_YEAR;
        y.snapshot_bytes = state_bytes * SNAPSHOTS_KEPT;
        years.push(y);
    }
    Plan {
        scenario: scenario.clone(),
        sizes: sizes.clone(),
        years,
    }
}

/// The kept log on disk: the tail in sled at sled's factor, the rest
/// sealed at its own size plus each record's head.
fn log_on_disk(y: &YearPlan, d: disk::DiskFactor) -> f64 {
    let records = y.log_records_kept;
    if records <= 0.0 {
        return 0.0;
    }
    let tail_records = SLED_TAIL_RECORDS.min(records);
    let tail_bytes = y.log_record_bytes_kept * tail_records / records;
    let sealed_bytes = y.log_record_bytes_kept - tail_bytes;
    let sealed_records = records - tail_records;
    tail_bytes * d.disk_bytes_per_record_byte
        + sealed_bytes
        + sealed_records * SEALED_BYTES_PER_RECORD
}

/// `base × growth^(year-1)`, spread over the districts.
fn grown(base: u64, growth: f64, year: u32, districts: u64) -> f64 {
    base as f64 * growth.powi(year as i32 - 1) / districts.max(1) as f64
}

fn year_plan(s: &Scenario, sizes: &Sizes, year: u32) -> YearPlan {
    let users = grown(s.users, s.user_growth_per_year, year, s.districts);
    let subscribers = grown(s.subscribers, s.user_growth_per_year, year, s.districts);
    let fridges = grown(s.fridges, s.fridge_growth_per_year, year, s.districts);
    let flows = flows_per_day(s, users, subscribers, fridges);
    let per_day = daily_total(sizes, &flows);
    YearPlan {
        year,
        users,
        subscribers,
        fridges,
        flows_per_day: flows,
        log_records_per_day: per_day.log_records,
        log_record_bytes_per_day: per_day.log_record_bytes,
        log_record_bytes_written: per_day.log_record_bytes * DAYS_PER_YEAR,
        log_record_bytes_kept: 0.0,
        log_records_kept: 0.0,
        log_disk_bytes_kept: None,
        snapshot_bytes: 0.0,
        channels: channels(s, &flows, &per_day),
    }
}

fn flows_per_day(s: &Scenario, users: f64, subscribers: f64, fridges: f64) -> FlowsPerDay {
    let orders = users * s.orders_per_user_per_day;
    let app = orders * s.app_share;
    let app_cancels = app * s.cancel_share;
    let app_orders = app - app_cancels;
    let pos_orders = orders - app;
    let plan_days = subscribers * s.plan_days_per_week / 7.0;
    let uploads = fridges * SECS_PER_DAY / s.telemetry_interval_secs.max(1) as f64;
    let scan_uploads = uploads / s.scan_every_uploads.max(1) as f64;
    FlowsPerDay {
        app_orders,
        app_cancels,
        pos_orders,
        pickups: (app_orders + pos_orders) * s.pickup_share,
        plan_days,
        temperature_uploads: uploads - scan_uploads,
        scan_uploads,
        restocks: fridges * s.restocks_per_fridge_per_day,
        catalog_reads: app * s.catalog_reads_per_order,
        connections: fridges * s.watchers_per_fridge,
    }
}

/// Every flow's cost times its count, summed.
fn daily_total(sizes: &Sizes, f: &FlowsPerDay) -> Cost {
    let parts = [
        (sizes.app_order, f.app_orders),
        (sizes.app_cancel, f.app_cancels),
        (sizes.pos_order, f.pos_orders),
        (sizes.pickup, f.pickups),
        (sizes.plan_day, f.plan_days),
        (sizes.temperature_upload, f.temperature_uploads),
        (sizes.scan_upload, f.scan_uploads),
        (sizes.restock, f.restocks),
        (sizes.catalog_read, f.catalog_reads),
    ];
    parts
        .into_iter()
        .map(|(cost, n)| cost.scaled(n))
        .fold(Cost::default(), add)
}

fn add(a: Cost, b: Cost) -> Cost {
    Cost {
        log_records: a.log_records + b.log_records,
        log_record_bytes: a.log_record_bytes + b.log_record_bytes,
        state_bytes: a.state_bytes + b.state_bytes,
        api_requests: a.api_requests + b.api_requests,
        api_bytes: a.api_bytes + b.api_bytes,
        push_fridge_bytes: a.push_fridge_bytes + b.push_fridge_bytes,
        push_customer_bytes: a.push_customer_bytes + b.push_customer_bytes,
        push_district_bytes: a.push_district_bytes + b.push_district_bytes,
        push_fridge_frames: a.push_fridge_frames + b.push_fridge_frames,
        push_customer_frames: a.push_customer_frames + b.push_customer_frames,
        push_district_frames: a.push_district_frames + b.push_district_frames,
        telemetry_requests: a.telemetry_requests + b.telemetry_requests,
        telemetry_bytes: a.telemetry_bytes + b.telemetry_bytes,
        nats_messages: a.nats_messages + b.nats_messages,
        nats_bytes: a.nats_bytes + b.nats_bytes,
    }
}

fn state_growth_per_day(sizes: &Sizes, f: &FlowsPerDay) -> f64 {
    daily_total(sizes, f).state_bytes.max(0.0)
}

fn channels(s: &Scenario, f: &FlowsPerDay, day: &Cost) -> Channels {
    let bandwidth = |messages: f64, bytes: f64| {
        let average = bytes / SECS_PER_DAY;
        Bandwidth {
            messages_per_day: messages,
            bytes_per_day: bytes,
            average_bytes_per_sec: average,
            peak_bytes_per_sec: average * s.peak_to_average,
        }
    };
    // A fridge's frames reach its watchers; a district-wide frame reaches
    // every connection.
    let push_bytes = day.push_fridge_bytes * s.watchers_per_fridge
        + day.push_district_bytes * f.connections
        + day.push_customer_bytes;
    let push_frames = day.push_fridge_frames * s.watchers_per_fridge
        + day.push_district_frames * f.connections
        + day.push_customer_frames;
    Channels {
        app_api: bandwidth(day.api_requests, day.api_bytes),
        websocket_push: bandwidth(push_frames, push_bytes),
        fridge_telemetry: bandwidth(day.telemetry_requests, day.telemetry_bytes),
        nats: bandwidth(day.nats_messages, day.nats_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_sizes() -> Sizes {
        let order = Cost {
            log_records: 5.0,
            log_record_bytes: 1_000.0,
            state_bytes: 100.0,
            api_requests: 2.0,
            api_bytes: 400.0,
            nats_messages: 2.0,
            nats_bytes: 300.0,
            ..Cost::default()
        };
        Sizes {
            app_order: order,
            app_cancel: order.scaled(0.5),
            pos_order: order,
            pickup: Cost {
                log_record_bytes: 200.0,
                telemetry_requests: 1.0,
                telemetry_bytes: 150.0,
                push_fridge_bytes: 80.0,
                ..Cost::default()
            },
            plan_day: order.scaled(2.0),
            temperature_upload: Cost {
                log_record_bytes: 50.0,
                telemetry_requests: 1.0,
                telemetry_bytes: 100.0,
                ..Cost::default()
            },
            scan_upload: Cost::default(),
            restock: Cost::default(),
            catalog_read: Cost {
                api_requests: 1.0,
                api_bytes: 10_000.0,
                ..Cost::default()
            },
            disk: Some(disk::DiskFactor {
                disk_bytes_per_record_byte: 2.0,
                records_written: 1,
            }),
        }
    }

    fn tills_only(users: u64) -> Scenario {
        Scenario {
            users,
            subscribers: 0,
            fridges: 0,
            orders_per_user_per_day: 1.0,
            app_share: 0.0,
            pickup_share: 0.0,
            ..Scenario::default()
        }
    }

    #[test]
    fn a_day_of_till_orders_writes_orders_times_the_order_record_bytes() {
        let plan = plan(&tills_only(300), &unit_sizes());
        let y1 = &plan.years[0];
        assert_eq!(y1.log_record_bytes_per_day, 300.0 * 1_000.0);
        assert_eq!(y1.log_records_per_day, 300.0 * 5.0);
        assert_eq!(y1.channels.nats.bytes_per_day, 300.0 * 300.0);
        assert_eq!(y1.channels.app_api.messages_per_day, 600.0);
        assert_eq!(y1.channels.fridge_telemetry.bytes_per_day, 0.0);
    }

    #[test]
    fn users_grow_by_the_factor_every_year_and_the_log_keeps_every_year() {
        let s = Scenario {
            user_growth_per_year: 2.0,
            ..tills_only(100)
        };
        let plan = plan(&s, &unit_sizes());
        let written: Vec<f64> = plan
            .years
            .iter()
            .map(|y| y.log_record_bytes_written)
            .collect();
        assert_eq!(written[1], written[0] * 2.0);
        assert_eq!(written[2], written[0] * 4.0);
        assert_eq!(
            plan.years[2].log_record_bytes_kept,
            written.iter().sum::<f64>()
        );
        let y3 = &plan.years[2];
        assert_eq!(y3.log_records_kept, 7.0 * 365.0 * 100.0 * 5.0);
    }

    #[test]
    fn the_kept_log_costs_sleds_factor_only_for_the_tail_the_rest_is_sealed() {
        let s = Scenario {
            years: 3,
            user_growth_per_year: 1.0,
            ..tills_only(1_000)
        };
        let y3 = plan(&s, &unit_sizes()).years[2].clone();
        // Till orders only: 5 records of 200 bytes each per order.
        let records = 3.0 * 365.0 * 1_000.0 * 5.0;
        assert_eq!(y3.log_records_kept, records);
        let tail = SLED_TAIL_RECORDS * 200.0 * 2.0;
        let sealed = (records - SLED_TAIL_RECORDS) * (200.0 + SEALED_BYTES_PER_RECORD);
        let on_disk = y3.log_disk_bytes_kept.unwrap();
        assert!(
            (on_disk - (tail + sealed)).abs() < 1.0,
            "{on_disk} vs {}",
            tail + sealed
        );

        // A log shorter than the tail is all in sled.
        let short = plan(&tills_only(10), &unit_sizes()).years[0].clone();
        assert!(short.log_records_kept < SLED_TAIL_RECORDS);
        assert_eq!(
            short.log_disk_bytes_kept,
            Some(2.0 * short.log_record_bytes_kept)
        );
    }

    #[test]
    fn a_retention_of_one_year_keeps_only_the_last_years_writes() {
        let s = Scenario {
            retention_years: Some(1),
            ..tills_only(100)
        };
        let plan = plan(&s, &unit_sizes());
        let y3 = &plan.years[2];
        assert_eq!(y3.log_record_bytes_kept, y3.log_record_bytes_written);
    }

    #[test]
    fn districts_share_the_city_evenly() {
        let one = plan(&tills_only(1_000), &unit_sizes());
        let four = plan(
            &Scenario {
                districts: 4,
                ..tills_only(1_000)
            },
            &unit_sizes(),
        );
        assert_eq!(
            four.years[0].log_record_bytes_per_day * 4.0,
            one.years[0].log_record_bytes_per_day
        );
    }

    #[test]
    fn fridges_upload_every_interval_and_the_peak_is_the_factor_over_the_average() {
        let s = Scenario {
            fridges: 10,
            telemetry_interval_secs: 60,
            scan_every_uploads: 1_000_000,
            peak_to_average: 4.0,
            ..tills_only(0)
        };
        let y1 = &plan(&s, &unit_sizes()).years[0];
        let uploads = 10.0 * 1_440.0;
        assert!(
            (y1.flows_per_day.temperature_uploads + y1.flows_per_day.scan_uploads - uploads).abs()
                < 1e-6
        );
        let t = y1.channels.fridge_telemetry;
        assert!((t.peak_bytes_per_sec - 4.0 * t.average_bytes_per_sec).abs() < 1e-9);
        assert!(t.bytes_per_day > 0.0);
    }

    #[test]
    fn a_share_outside_zero_to_one_is_refused_with_its_name() {
        let s = Scenario {
            app_share: 1.5,
            ..Scenario::default()
        };
        assert!(matches!(
            s.check(),
            Err(ScenarioError::OutOfRange {
                field: "app_share",
                ..
            })
        ));
        assert_eq!(Scenario::default().check(), Ok(()));
    }

    #[test]
    fn every_flow_is_measured_through_the_core() {
        let (sizes, recorded) = measure::measure().unwrap();
        // A paid order: its charge request and the result, on NATS.
        assert_eq!(sizes.pos_order.nats_messages, 2.0);
        assert_eq!(sizes.app_order.nats_messages, 2.0);
        assert_eq!(sizes.app_cancel.nats_messages, 0.0);
        assert!(sizes.pos_order.log_records >= 4.0);
        assert!(sizes.app_order.api_bytes > sizes.pos_order.api_bytes);
        assert_eq!(sizes.pickup.telemetry_requests, 1.0);
        assert!(sizes.plan_day.log_records > sizes.pickup.log_records);
        assert!(sizes.temperature_upload.log_record_bytes > 0.0);
        assert!(sizes.catalog_read.api_bytes > 1_000.0);
        assert!(recorded.iter().all(|batch| !batch.is_empty()));
    }

    #[test]
    fn a_scenario_file_names_only_what_it_changes() {
        let s: Scenario = toml::from_str("users = 1000000\ndistricts = 20\n").unwrap();
        assert_eq!(s.users, 1_000_000);
        assert_eq!(s.fridges, Scenario::default().fridges);
        assert!(toml::from_str::<Scenario>("userz = 1").is_err());
    }
}
