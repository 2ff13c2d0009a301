//! Node configuration: one TOML file, with command-line and environment
//! overrides applied by `main`. Validated once at start-up so a bad file fails
//! loudly before anything listens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use protocol::geo::DistrictArea;
use protocol::DistrictId;
use serde::Deserialize;

use district::orders::{
    GRACE_WINDOW_DEFAULT_SECS, GRACE_WINDOW_MAX_SECS, GRACE_WINDOW_MIN_SECS,
    PAYMENT_TIMEOUT_DEFAULT_SECS, PICKUP_WINDOW_DEFAULT_SECS, POS_GRACE_WINDOW_DEFAULT_SECS,
};
use district::OrderPolicy;

/// Default request body limit, in bytes. Admin bodies are small JSON.
pub const MAX_BODY_BYTES_DEFAULT: usize = 64 * 1024;
/// Default largest catalog search radius, in metres.
pub const MAX_RADIUS_M_DEFAULT: u32 = 50_000;
/// Radius used when a catalog query gives none, in metres.
pub const RADIUS_M_DEFAULT: u32 = 2_000;
/// Allowed clock skew when verifying token expiry, in seconds.
pub const TOKEN_LEEWAY_SECS_DEFAULT: u64 = 30;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Parsed when the file is read: a bad id fails the config's parse.
    pub district_id: DistrictId,
    pub geohash_prefixes: Vec<String>,
    #[serde(default = "default_http_addr")]
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub limits: Limits,
    pub auth: AuthConfig,
    /// Other districts' nodes, for `GET /v1/locate`.
    #[serde(default)]
    pub directory: Vec<DirectoryEntry>,
    /// This node's public URL, as `/v1/locate` reports it.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub orders: OrdersConfig,
    #[serde(default)]
    pub subscriptions: SubscriptionsConfig,
    #[serde(default)]
    pub loyalty: LoyaltyConfig,
    /// Without it the node runs alone: orders wait in the outbox for NATS.
    #[serde(default)]
    pub nats: Option<NatsConfig>,
    #[serde(default)]
    pub ws: WsConfig,
    #[serde(default)]
    pub fridges: FridgesConfig,
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
    #[serde(default)]
    pub fleet: FleetConfig,
    #[serde(default)]
    pub waitlist: WaitlistConfig,
    #[serde(default)]
    pub notifications: NotificationsConfig,
    #[serde(default)]
    pub insights: InsightsConfig,
    #[serde(default)]
    pub payments: PaymentsConfig,
}

/// Default most payment requests awaiting a result before new orders are
/// refused: at the ~5k orders/s a node confirms, a few seconds of orders
/// behind; far below what would outlast the payment timeout.
pub const MAX_PAYMENTS_BACKLOG_DEFAULT: usize = 20_000;

/// `[payments]`: backpressure from the payments path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Payment requests in the outbox (asked for, no result recorded yet)
    /// at which new orders are answered 503 `payments_backlog` instead of
    /// being taken and timing out unpaid; at least 1.
    pub max_backlog: usize,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            max_backlog: MAX_PAYMENTS_BACKLOG_DEFAULT,
        }
    }
}

impl PaymentsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_backlog == 0 {
            return Err(ConfigError::Invalid(
                "[payments] max_backlog must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Default seconds between two fleet publications of the insights.
pub const INSIGHTS_PUBLISH_SECS_DEFAULT: u64 = 60;

/// `[insights]`: the reporting projection's fleet publication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightsConfig {
    /// Seconds between two puts of today's and yesterday's aggregate on
    /// the fleet board (also put at shutdown); at least 1.
    pub publish_secs: u64,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig {
            publish_secs: INSIGHTS_PUBLISH_SECS_DEFAULT,
        }
    }
}

impl InsightsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.publish_secs == 0 {
            return Err(ConfigError::Invalid(
                "[insights] publish_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn publish_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.publish_secs.max(1))
    }

    /// A district whose newest aggregate is older than this is stale on
    /// the fleet view: three missed publications.
    pub fn stale_after_secs(&self) -> i64 {
        i64::try_from(self.publish_secs.saturating_mul(3)).unwrap_or(i64::MAX)
    }
}

/// Default lead of a pickup reminder before the deadline, in minutes.
pub const REMINDER_LEAD_MINUTES_DEFAULT: u32 = 30;
/// Longest reminder lead, in minutes (a day).
pub const REMINDER_LEAD_MINUTES_MAX: u32 = 24 * 60;
/// Default notifications waiting for the push adapter before new ones are
/// dropped (the adapter is behind or the provider slow).
pub const PUSH_QUEUE_NOTIFICATIONS_DEFAULT: usize = 4_096;

/// Where phone pushes go (see `notify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushAdapter {
    /// A structured log line per push (development; the default).
    Log,
    /// One JSON line per push appended to `push_file` (tests, demos).
    File,
}

/// `[notifications]`: pickup reminders and pushes to offline phones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    pub reminder_lead_minutes: u32,
    pub push: PushAdapter,
    /// Required with `push = "file"`.
    pub push_file: Option<PathBuf>,
    pub push_queue_notifications: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            reminder_lead_minutes: REMINDER_LEAD_MINUTES_DEFAULT,
            push: PushAdapter::Log,
            push_file: None,
            push_queue_notifications: PUSH_QUEUE_NOTIFICATIONS_DEFAULT,
        }
    }
}

impl NotificationsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("[notifications] {m}")));
        if !(1..=REMINDER_LEAD_MINUTES_MAX).contains(&self.reminder_lead_minutes) {
            return invalid(&format!(
                "reminder_lead_minutes must be 1 to {REMINDER_LEAD_MINUTES_MAX}"
            ));
        }
        if self.push_queue_notifications == 0 {
            return invalid("push_queue_notifications must be at least 1");
        }
        match (self.push, &self.push_file) {
            (PushAdapter::File, None) => invalid("push = \"file\" needs push_file"),
            (PushAdapter::Log, Some(_)) => invalid("push_file is only read with push = \"file\""),
            _ => Ok(()),
        }
    }

    pub fn reminder_lead(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.reminder_lead_minutes))
    }
}

/// `[waitlist]`: back-in-stock waitlists.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaitlistConfig {
    /// How long a hold keeps its unit for the customer, seconds (30..=3600).
    pub hold_secs: u32,
    /// How long an entry waits before it expires, seconds (60..=604800).
    pub entry_ttl_secs: u32,
}

impl Default for WaitlistConfig {
    fn default() -> Self {
        WaitlistConfig {
            hold_secs: district::waitlist::HOLD_DEFAULT_SECS,
            entry_ttl_secs: district::waitlist::ENTRY_TTL_DEFAULT_SECS,
        }
    }
}

impl WaitlistConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(30..=3600).contains(&self.hold_secs) {
            return Err(ConfigError::Invalid(format!(
                "waitlist.hold_secs must be 30..=3600, got {}",
                self.hold_secs
            )));
        }
        if !(60..=7 * 24 * 3600).contains(&self.entry_ttl_secs) {
            return Err(ConfigError::Invalid(format!(
                "waitlist.entry_ttl_secs must be 60..=604800, got {}",
                self.entry_ttl_secs
            )));
        }
        Ok(())
    }

    pub fn policy(&self) -> district::WaitlistPolicy {
        district::WaitlistPolicy {
            hold: chrono::Duration::seconds(self.hold_secs.into()),
            entry_ttl: chrono::Duration::seconds(self.entry_ttl_secs.into()),
        }
    }
}

/// `[fridges]`: how the district treats fridge telemetry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FridgesConfig {
    /// Safe limit for chilled food, °C.
    pub temp_limit_c: f64,
    /// How long above the limit before the meals are quarantined, seconds.
    pub temp_allowed_secs: u32,
    /// How long a fridge may be silent before it shows offline, seconds.
    pub silence_allowed_secs: u32,
}

impl Default for FridgesConfig {
    fn default() -> Self {
        FridgesConfig {
            temp_limit_c: f64::from(fridge_acl::translate::TEMP_LIMIT_DEFAULT_MILLI_C) / 1000.0,
            temp_allowed_secs: fridge_acl::translate::TEMP_ALLOWED_DEFAULT_SECS as u32,
            silence_allowed_secs: district::fridges::SILENCE_ALLOWED_DEFAULT_SECS as u32,
        }
    }
}

impl FridgesConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(-10.0..=15.0).contains(&self.temp_limit_c) {
            return Err(ConfigError::Invalid(
                "fridges.temp_limit_c must be between -10 and 15".into(),
            ));
        }
        if self.temp_allowed_secs == 0 || self.silence_allowed_secs < 60 {
            return Err(ConfigError::Invalid(
                "fridges.temp_allowed_secs must be positive and fridges.silence_allowed_secs at least 60"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn policy(&self) -> district::FridgePolicy {
        district::FridgePolicy {
            temperature: fridge_acl::TemperaturePolicy {
                limit_milli_c: (self.temp_limit_c * 1000.0).round() as i32,
                allowed: chrono::Duration::seconds(i64::from(self.temp_allowed_secs)),
            },
            silence_allowed: chrono::Duration::seconds(i64::from(self.silence_allowed_secs)),
        }
    }
}

/// Most simultaneous WebSocket connections per node, by default.
pub const WS_MAX_CONNECTIONS_DEFAULT: usize = 20_000;
/// Most area + fridge subscriptions on one connection, by default.
pub const WS_MAX_SUBSCRIPTIONS_DEFAULT: usize = 64;
/// Frames queued for one connection before it counts as too slow.
pub const WS_QUEUE_FRAMES_DEFAULT: usize = 256;
/// Recent messages kept for clients resuming with `since`.
pub const WS_RESUME_MESSAGES_DEFAULT: usize = 8_192;
/// A connection that sends nothing (not even a pong) this long is closed.
pub const WS_IDLE_TIMEOUT_SECS_DEFAULT: u64 = 90;
/// How often the server pings an idle connection.
pub const WS_PING_INTERVAL_SECS_DEFAULT: u64 = 30;
/// Largest frame a client may send; subscribe messages are small.
pub const WS_MAX_FRAME_BYTES_DEFAULT: usize = 16 * 1024;
/// Most simultaneous connections opened with one caller's token (role and
/// subject): an app has one or two, a runaway client loops.
pub const WS_MAX_CONNECTIONS_PER_CALLER_DEFAULT: usize = 8;

/// Fewest events between two state snapshots. A full replay runs at
/// 128k-228k events/s (BENCHMARKS.md, "Start-up", 10 M events on the 2-core
/// VM), so a tail of this many takes a start-up 0.4-0.8 s; a bigger state
/// waits longer (below).
pub const SNAPSHOT_EVERY_EVENTS_DEFAULT: u64 = 100_000;
/// Events between two snapshots per order in memory, when that is more
/// than `every_events`. A snapshot write costs ~1.8 µs of CPU per order in
/// memory (BENCHMARKS.md, "Start-up", "Snapshot write"), so at one event per
/// order it adds at most ~1.8 µs to each event however big the state: ~4 %
/// of the writer's ~42 µs per event under order load (docs/perf,
/// 2026-11-29), where a fixed 100,000 events cost 3x that at 300k orders,
/// and more as the state grew. One is also the most start-up allows: the
/// tail is then at most one event per order, 4.4-7.8 µs each at the
/// measured replay speed, beside ~4 µs per order to load the snapshot, so
/// ~12 µs per order: 400k orders in memory still start in about 5 s. (Two
/// would halve the write's share and make start-up ~20 µs per order.)
pub const SNAPSHOT_EVENTS_PER_HOT_ORDER_DEFAULT: u64 = 1;
/// A quiet node still snapshots what it has after this long.
pub const SNAPSHOT_EVERY_SECS_DEFAULT: u64 = 600;
/// Snapshots kept on disk: the newest, and one to fall back to.
pub const SNAPSHOT_KEEP_DEFAULT: usize = 2;

/// A district whose heartbeat was not seen for this long has left the
/// fleet: three missed heartbeats.
pub const FLEET_TTL_SECS_DEFAULT: u64 = 15;
pub const FLEET_HEARTBEAT_SECS_DEFAULT: u64 = 5;
/// Longest wait for NATS when joining the directory at start-up.
pub const FLEET_JOIN_TIMEOUT_SECS_DEFAULT: u64 = 5;

/// `[fleet]`: the region directory (used when `[nats]` is set). The
/// static `[[directory]]` list stays as a fallback only (see `locate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// `false`: the node does not register and routes only from
    /// `[[directory]]`.
    pub enabled: bool,
    pub ttl_secs: u64,
    pub heartbeat_secs: u64,
    pub join_timeout_secs: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            enabled: true,
            ttl_secs: FLEET_TTL_SECS_DEFAULT,
            heartbeat_secs: FLEET_HEARTBEAT_SECS_DEFAULT,
            join_timeout_secs: FLEET_JOIN_TIMEOUT_SECS_DEFAULT,
        }
    }
}

impl FleetConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_secs == 0 || self.ttl_secs < 2 * self.heartbeat_secs {
            return Err(ConfigError::Invalid(
                "[fleet] needs heartbeat_secs >= 1 and ttl_secs >= 2 * heartbeat_secs".into(),
            ));
        }
        Ok(())
    }
}

/// `[snapshots]`: when the node writes state snapshots (start-up replays
/// only the log after the newest one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsConfig {
    /// `false` makes every start-up replay the whole log.
    pub enabled: bool,
    /// Fewest events between two snapshots.
    pub every_events: u64,
    /// And at least this many events per order in memory (0: the interval
    /// is `every_events` whatever the state's size).
    pub events_per_hot_order: u64,
    pub every_secs: u64,
    pub keep: usize,
    /// Records per sled tree of the log; after each snapshot, the closed
    /// trees it covers move out of sled into sealed segments
    /// (`store::sealed`). 0 keeps every record in one sled tree.
    pub seal_segment_records: u64,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig {
            enabled: true,
            every_events: SNAPSHOT_EVERY_EVENTS_DEFAULT,
            events_per_hot_order: SNAPSHOT_EVENTS_PER_HOT_ORDER_DEFAULT,
            every_secs: SNAPSHOT_EVERY_SECS_DEFAULT,
            keep: SNAPSHOT_KEEP_DEFAULT,
            seal_segment_records: crate::store::SEGMENT_RECORDS_DEFAULT,
        }
    }
}

impl SnapshotsConfig {
    /// The store start-up reads, if snapshots are on.
    pub fn store(&self, data_dir: &std::path::Path) -> Option<crate::snapshot::SnapshotStore> {
        self.enabled
            .then(|| crate::snapshot::SnapshotStore::new(data_dir, self.keep))
    }

    pub fn policy(&self) -> crate::snapshot::SnapshotPolicy {
        crate::snapshot::SnapshotPolicy {
            every_events: self.every_events.max(1),
            events_per_hot_order: self.events_per_hot_order,
            every_secs: self.every_secs.max(1),
        }
    }
}

/// `[ws]`: limits of the WebSocket push endpoint `/v1/ws`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub queue_frames: usize,
    pub resume_messages: usize,
    pub idle_timeout_secs: u64,
    pub ping_interval_secs: u64,
    pub max_frame_bytes: usize,
    /// Counted for upgrades with an `Authorization` header; anonymous
    /// connections count only against `max_connections`.
    pub max_connections_per_caller: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_connections: WS_MAX_CONNECTIONS_DEFAULT,
            max_subscriptions: WS_MAX_SUBSCRIPTIONS_DEFAULT,
            queue_frames: WS_QUEUE_FRAMES_DEFAULT,
            resume_messages: WS_RESUME_MESSAGES_DEFAULT,
            idle_timeout_secs: WS_IDLE_TIMEOUT_SECS_DEFAULT,
            ping_interval_secs: WS_PING_INTERVAL_SECS_DEFAULT,
            max_frame_bytes: WS_MAX_FRAME_BYTES_DEFAULT,
            max_connections_per_caller: WS_MAX_CONNECTIONS_PER_CALLER_DEFAULT,
        }
    }
}

impl WsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("ws.max_connections", self.max_connections as u64),
            ("ws.max_subscriptions", self.max_subscriptions as u64),
            (
                "ws.max_connections_per_caller",
                self.max_connections_per_caller as u64,
            ),
            ("ws.queue_frames", self.queue_frames as u64),
            ("ws.resume_messages", self.resume_messages as u64),
            ("ws.idle_timeout_secs", self.idle_timeout_secs),
            ("ws.ping_interval_secs", self.ping_interval_secs),
            ("ws.max_frame_bytes", self.max_frame_bytes as u64),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.ping_interval_secs >= self.idle_timeout_secs {
            return Err(ConfigError::Invalid(
                "ws.ping_interval_secs must be shorter than ws.idle_timeout_secs".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    #[serde(default = "grace_default")]
    pub grace_window_secs: u32,
    #[serde(default)]
    pub pos_grace_window_secs: u32,
    #[serde(default = "payment_timeout_default")]
    pub payment_timeout_secs: u32,
    #[serde(default = "pickup_window_default")]
    pub pickup_window_secs: u32,
    /// Reservation hoarding (`district::orders::hoarding`), per customer.
    #[serde(default = "max_held_orders_default")]
    pub max_held_orders_per_customer: u32,
    #[serde(default = "free_cancels_default")]
    pub free_cancels_per_meal: u32,
    #[serde(default = "free_cancel_window_default")]
    pub free_cancel_window_secs: u32,
    /// How long a final order (picked up, cancelled, refused, refunded,
    /// unclaimed) stays in memory before it is archived and served from
    /// the archive index (`district::orders::archive`).
    #[serde(default = "retention_days_default")]
    pub retention_days: u32,
    /// Archived orders kept in sled before they move into an immutable
    /// run file (`crate::archive`): sled's memory grows with what it ever
    /// held, a run's does not.
    #[serde(default = "archive_flush_entries_default")]
    pub archive_flush_entries: u64,
}

fn archive_flush_entries_default() -> u64 {
    crate::archive::FLUSH_ENTRIES_DEFAULT
}

/// Most archived orders sled may hold before a flush (~600 MB of views).
pub const MAX_ARCHIVE_FLUSH_ENTRIES: u64 = 1_000_000;

fn retention_days_default() -> u32 {
    district::orders::archive::RETENTION_DEFAULT_DAYS
}

/// Longest retention accepted, in days (a year: beyond that the point of
/// archiving, a bounded memory, is lost).
pub const MAX_RETENTION_DAYS: u32 = 366;

fn max_held_orders_default() -> u32 {
    district::orders::hoarding::MAX_HELD_ORDERS_DEFAULT
}
fn free_cancels_default() -> u32 {
    district::orders::hoarding::FREE_CANCELS_PER_MEAL_DEFAULT
}
fn free_cancel_window_default() -> u32 {
    district::orders::hoarding::FREE_CANCEL_WINDOW_DEFAULT_SECS
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            grace_window_secs: GRACE_WINDOW_DEFAULT_SECS,
            pos_grace_window_secs: POS_GRACE_WINDOW_DEFAULT_SECS,
            payment_timeout_secs: PAYMENT_TIMEOUT_DEFAULT_SECS,
            pickup_window_secs: PICKUP_WINDOW_DEFAULT_SECS,
            max_held_orders_per_customer: max_held_orders_default(),
            free_cancels_per_meal: free_cancels_default(),
            free_cancel_window_secs: free_cancel_window_default(),
            retention_days: retention_days_default(),
            archive_flush_entries: archive_flush_entries_default(),
        }
    }
}

fn grace_default() -> u32 {
    GRACE_WINDOW_DEFAULT_SECS
}
fn payment_timeout_default() -> u32 {
    PAYMENT_TIMEOUT_DEFAULT_SECS
}
fn pickup_window_default() -> u32 {
    PICKUP_WINDOW_DEFAULT_SECS
}

/// Longest payment timeout accepted, in seconds.
pub const MAX_PAYMENT_TIMEOUT_SECS: u32 = 600;

impl OrdersConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Generic so the u32 settings and the u64 `archive_flush_entries`
        // share it.
        fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
            name: &str,
            v: T,
            lo: T,
            hi: T,
        ) -> Result<(), ConfigError> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "orders.{name} must be {lo}..={hi}, got {v}"
                )))
            }
        }
        in_range(
            "grace_window_secs",
            self.grace_window_secs,
            GRACE_WINDOW_MIN_SECS,
            GRACE_WINDOW_MAX_SECS,
        )?;
        in_range(
            "pos_grace_window_secs",
            self.pos_grace_window_secs,
            0,
            GRACE_WINDOW_MAX_SECS,
        )?;
        in_range(
            "payment_timeout_secs",
            self.payment_timeout_secs,
            1,
            MAX_PAYMENT_TIMEOUT_SECS,
        )?;
        in_range(
            "pickup_window_secs",
            self.pickup_window_secs,
            60,
            7 * 24 * 3600,
        )?;
        // At least a day: a refund or a late payment result names its
        // order minutes after it ended, never days.
        in_range("retention_days", self.retention_days, 1, MAX_RETENTION_DAYS)?;
        in_range(
            "archive_flush_entries",
            self.archive_flush_entries,
            1,
            MAX_ARCHIVE_FLUSH_ENTRIES,
        )
    }

    pub fn policy(&self) -> OrderPolicy {
        let secs = |v: u32| chrono::Duration::seconds(i64::from(v));
        OrderPolicy {
            grace_window_app: secs(self.grace_window_secs),
            grace_window_pos: secs(self.pos_grace_window_secs),
            payment_timeout: secs(self.payment_timeout_secs),
            pickup_window: secs(self.pickup_window_secs),
            holds: district::orders::hoarding::HoldPolicy {
                max_held_orders: self.max_held_orders_per_customer,
                free_cancels_per_meal: self.free_cancels_per_meal,
                free_cancel_window: secs(self.free_cancel_window_secs),
            },
            retention: chrono::Duration::days(i64::from(self.retention_days)),
        }
    }
}

/// `[loyalty]`: how customers earn and spend bonus points here. Recorded
/// in the log at start-up when it changed (`LoyaltyRulesDefined`), so a
/// purchase earns by the rules of its time.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoyaltyConfig {
    /// Points per major currency unit charged (0: no earning; default 1).
    pub points_per_major_unit: u32,
    /// Minor units in a major one (default 100).
    pub minor_per_major: u32,
    /// A point's value when spent, in minor units (0: no spending; default 1).
    pub minor_per_point: u32,
    /// Earned points expire after this many days (1..=3650; default 365).
    pub expire_after_days: u32,
    /// Points a share code's owner earns per purchase made with it
    /// (default 100; once per payment method).
    pub referral_reward_points: u32,
}

impl Default for LoyaltyConfig {
    fn default() -> Self {
        LoyaltyConfig {
            points_per_major_unit: 1,
            minor_per_major: 100,
            minor_per_point: 1,
            expire_after_days: 365,
            referral_reward_points: 100,
        }
    }
}

impl LoyaltyConfig {
    pub fn rules(&self) -> protocol::promotions::LoyaltyRules {
        protocol::promotions::LoyaltyRules {
            points_per_major_unit: self.points_per_major_unit,
            minor_per_major: self.minor_per_major,
            minor_per_point: self.minor_per_point,
            expire_after_days: self.expire_after_days,
            referral_reward_points: self.referral_reward_points,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3650).contains(&self.expire_after_days) {
            return Err(format!(
                "loyalty.expire_after_days must be 1..=3650, got {}",
                self.expire_after_days
            ));
        }
        if !(1..=10_000).contains(&self.minor_per_major) {
            return Err(format!(
                "loyalty.minor_per_major must be 1..=10000, got {}",
                self.minor_per_major
            ));
        }
        if self.referral_reward_points > 1_000_000 {
            return Err(format!(
                "loyalty.referral_reward_points must be at most 1000000, got {}",
                self.referral_reward_points
            ));
        }
        if self.points_per_major_unit > 10_000 || self.minor_per_point > 10_000 {
            return Err(
                "loyalty.points_per_major_unit and minor_per_point must be at most 10000".into(),
            );
        }
        Ok(())
    }
}

/// `[subscriptions]`: weekly plans and materialisation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// Orders are made this many days ahead (1..=14; default 3).
    #[serde(default = "days_ahead_default")]
    pub days_ahead: u32,
    /// Local hour (0..=23) after which a change counts as made the next day
    /// (default 18).
    #[serde(default = "cutoff_hour_default")]
    pub change_cutoff_hour: u32,
    /// The district's offset from UTC in minutes (-720..=840; default 0):
    /// plan dates, the cutoff and the calendar are the district's local
    /// dates. A fixed offset, no DST rules: set it for the season or keep UTC.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Local hour (1..=23) of the delivery day until which a plan meal
    /// placed in the fridge stays reserved for its subscriber (default 21).
    #[serde(default = "pickup_until_hour_default")]
    pub pickup_until_hour: u32,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        SubscriptionsConfig {
            days_ahead: scheduler::MATERIALISE_DAYS_AHEAD_DEFAULT,
            change_cutoff_hour: scheduler::CHANGE_CUTOFF_DEFAULT_HOUR,
            utc_offset_minutes: scheduler::UTC_OFFSET_DEFAULT_MINUTES,
            pickup_until_hour: scheduler::PICKUP_UNTIL_DEFAULT_HOUR,
        }
    }
}

fn pickup_until_hour_default() -> u32 {
    scheduler::PICKUP_UNTIL_DEFAULT_HOUR
}

fn days_ahead_default() -> u32 {
    scheduler::MATERIALISE_DAYS_AHEAD_DEFAULT
}
fn cutoff_hour_default() -> u32 {
    scheduler::CHANGE_CUTOFF_DEFAULT_HOUR
}

impl SubscriptionsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=scheduler::MATERIALISE_DAYS_AHEAD_MAX).contains(&self.days_ahead) {
            return Err(ConfigError::Invalid(format!(
                "subscriptions.days_ahead must be 1..={}, got {}",
                scheduler::MATERIALISE_DAYS_AHEAD_MAX,
                self.days_ahead
            )));
        }
        if self.change_cutoff_hour > 23 {
            return Err(ConfigError::Invalid(format!(
                "subscriptions.change_cutoff_hour must be 0..=23, got {}",
                self.change_cutoff_hour
            )));
        }
        if !(1..=23).contains(&self.pickup_until_hour) {
            return Err(ConfigError::Invalid(format!(
                "subscriptions.pickup_until_hour must be 1..=23, got {}",
                self.pickup_until_hour
            )));
        }
        if !(-720..=840).contains(&self.utc_offset_minutes) {
            return Err(ConfigError::Invalid(format!(
                "subscriptions.utc_offset_minutes must be -720..=840, got {}",
                self.utc_offset_minutes
            )));
        }
        Ok(())
    }

    /// The scheduler's rules.
    pub fn policy(&self) -> scheduler::Policy {
        scheduler::Policy {
            days_ahead: self.days_ahead,
            cutoff_hour: self.change_cutoff_hour,
            utc_offset_minutes: self.utc_offset_minutes,
            charge_deadline: chrono::Duration::hours(scheduler::CHARGE_DEADLINE_DEFAULT_HOURS),
            pickup_until_hour: self.pickup_until_hour,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// e.g. `nats://127.0.0.1:4222`; several servers of a cluster are
    /// separated by commas.
    pub url: String,
    /// Copies of each stream and bucket this node creates (payment streams,
    /// the region directory): 3 on a NATS cluster, 1 on a single server.
    #[serde(default = "one")]
    pub replicas: usize,
}

fn one() -> usize {
    1
}

impl NatsConfig {
    /// Each server of `url`.
    pub fn servers(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
}

/// Writes (POST, PUT, PATCH, DELETE) one caller may make per second, by
/// default: far above a person or a till, far below a script.
pub const WRITES_PER_SEC_PER_CALLER_DEFAULT: u32 = 10;
/// Writes one caller may make at once before the rate applies.
pub const WRITE_BURST_PER_CALLER_DEFAULT: u32 = 40;
/// Catalog reads (`/v1/catalog`, `/v1/meals/…`, `/v1/locate`) per second
/// from one IP address, by default.
pub const CATALOG_READS_PER_SEC_PER_IP_DEFAULT: u32 = 50;
/// Catalog reads from one IP at once before the rate applies.
pub const CATALOG_BURST_PER_IP_DEFAULT: u32 = 200;

/// `[limits]`: request sizes and abuse limits. A rate of 0 turns that
/// limit off (benchmarks that drive one node from one address).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_radius")]
    pub max_radius_m: u32,
    /// Per caller: the token's role and subject, or the IP without one.
    #[serde(default = "default_writes_per_sec")]
    pub writes_per_sec_per_caller: u32,
    #[serde(default = "default_write_burst")]
    pub write_burst_per_caller: u32,
    #[serde(default = "default_catalog_reads_per_sec")]
    pub catalog_reads_per_sec_per_ip: u32,
    #[serde(default = "default_catalog_burst")]
    pub catalog_burst_per_ip: u32,
    /// Encoded catalog answers kept (`catalog_cache`); 0 turns the cache off.
    #[serde(default = "default_catalog_cache_entries")]
    pub catalog_cache_max_entries: usize,
    /// Bytes those answers may take, counting room for their compressed
    /// variants (`catalog_cache::charged_bytes`).
    #[serde(default = "default_catalog_cache_bytes")]
    pub catalog_cache_max_bytes: usize,
}

fn default_writes_per_sec() -> u32 {
    WRITES_PER_SEC_PER_CALLER_DEFAULT
}
fn default_write_burst() -> u32 {
    WRITE_BURST_PER_CALLER_DEFAULT
}
fn default_catalog_reads_per_sec() -> u32 {
    CATALOG_READS_PER_SEC_PER_IP_DEFAULT
}
fn default_catalog_burst() -> u32 {
    CATALOG_BURST_PER_IP_DEFAULT
}
fn default_catalog_cache_entries() -> usize {
    crate::catalog_cache::MAX_ENTRIES_DEFAULT
}
fn default_catalog_cache_bytes() -> usize {
    crate::catalog_cache::MAX_BYTES_DEFAULT
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: MAX_BODY_BYTES_DEFAULT,
            max_radius_m: MAX_RADIUS_M_DEFAULT,
            writes_per_sec_per_caller: WRITES_PER_SEC_PER_CALLER_DEFAULT,
            write_burst_per_caller: WRITE_BURST_PER_CALLER_DEFAULT,
            catalog_reads_per_sec_per_ip: CATALOG_READS_PER_SEC_PER_IP_DEFAULT,
            catalog_burst_per_ip: CATALOG_BURST_PER_IP_DEFAULT,
            catalog_cache_max_entries: crate::catalog_cache::MAX_ENTRIES_DEFAULT,
            catalog_cache_max_bytes: crate::catalog_cache::MAX_BYTES_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Ed25519 public key (SPKI PEM) of the issuer: it verifies tokens
    /// without a `kid` (and those whose `kid` is [`AuthConfig::kid`]).
    pub public_key_pem: String,
    /// The id of `public_key_pem` in the issuer's key set, if it has one.
    #[serde(default)]
    pub kid: Option<String>,
    /// More of the issuer's keys, each chosen by a token's header `kid`:
    /// during a rotation the new key is added here before the issuer signs
    /// with it, and the old one is removed once its tokens have expired.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Ed25519 private key (PKCS#8 PEM) for `region-node token`. Only
    /// development configs carry it; production nodes verify, never mint.
    #[serde(default)]
    pub private_key_pem: Option<String>,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

/// One key of the issuer's key set (`[[auth.keys]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub kid: String,
    /// Ed25519 public key (SPKI PEM).
    pub public_key_pem: String,
}

/// Longest key id accepted, in bytes.
pub const MAX_KID_LEN: usize = 64;

impl AuthConfig {
    /// Key ids are 1..=[`MAX_KID_LEN`] visible ASCII bytes and unique.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        let kids = self.kid.iter().chain(self.keys.iter().map(|k| &k.kid));
        for kid in kids {
            if kid.is_empty()
                || kid.len() > MAX_KID_LEN
                || !kid.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ConfigError::Invalid(format!(
                    "auth key id {kid:?} must be 1..={MAX_KID_LEN} visible ASCII bytes"
                )));
            }
            if !seen.insert(kid) {
                return Err(ConfigError::Invalid(format!(
                    "auth key id {kid:?} is listed twice"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    pub district_id: String,
    pub url: String,
    pub geohash_prefixes: Vec<String>,
}

fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_body() -> usize {
    MAX_BODY_BYTES_DEFAULT
}
fn default_max_radius() -> u32 {
    MAX_RADIUS_M_DEFAULT
}
fn default_leeway() -> u64 {
    TOKEN_LEEWAY_SECS_DEFAULT
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.area()?;
        config.orders.validate()?;
        config.ws.validate()?;
        config.fridges.validate()?;
        config.waitlist.validate()?;
        config.subscriptions.validate()?;
        config.loyalty.validate().map_err(ConfigError::Invalid)?;
        config.fleet.validate()?;
        config.auth.validate()?;
        config.notifications.validate()?;
        config.insights.validate()?;
        config.payments.validate()?;
        if let Some(n) = &config.nats {
            if !(1..=5).contains(&n.replicas) {
                return Err(ConfigError::Invalid(
                    "[nats] replicas must be 1 to 5".into(),
                ));
            }
        }
        for entry in &config.directory {
            DistrictArea::new(entry.geohash_prefixes.clone()).map_err(|e| {
                ConfigError::Invalid(format!("directory {}: {e}", entry.district_id))
            })?;
        }
        Ok(config)
    }

    /// The subscription rules in force on this node.
    pub fn schedule_policy(&self) -> scheduler::Policy {
        self.subscriptions.policy()
    }

    pub fn area(&self) -> Result<DistrictArea, ConfigError> {
        DistrictArea::new(self.geohash_prefixes.clone())
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dev config with `extra` inserted into its `[auth]` table.
    fn with_auth(extra: &str) -> Result<Config, ConfigError> {
        let dev = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/dev/region-detroit.toml"
        );
        let text = std::fs::read_to_string(dev).expect("dev config");
        let text = text.replacen("[auth]\n", &format!("[auth]\n{extra}\n"), 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).expect("write config");
        Config::load(&path)
    }

    #[test]
    fn notifications_config_is_checked() {
        let ok = NotificationsConfig::default();
        assert!(ok.validate().is_ok());
        assert_eq!(ok.reminder_lead(), chrono::Duration::minutes(30));
        let bad = [
            NotificationsConfig {
                push: PushAdapter::File,
                ..NotificationsConfig::default()
            },
            NotificationsConfig {
                push_file: Some("pushes.jsonl".into()),
                ..NotificationsConfig::default()
            },
            NotificationsConfig {
                reminder_lead_minutes: 0,
                ..NotificationsConfig::default()
            },
            NotificationsConfig {
                push_queue_notifications: 0,
                ..NotificationsConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ConfigError::Invalid(m)) if m.starts_with("[notifications]")),
                "{config:?}"
            );
        }
        let file = NotificationsConfig {
            push: PushAdapter::File,
            push_file: Some("pushes.jsonl".into()),
            ..NotificationsConfig::default()
        };
        assert!(file.validate().is_ok());
    }

    #[test]
    fn the_single_key_config_still_loads() {
        let config = with_auth("").expect("dev config");
        assert!(config.auth.kid.is_none() && config.auth.keys.is_empty());
    }

    #[test]
    fn a_key_set_loads_and_a_repeated_kid_is_refused() {
        let pem = "-----BEGIN PUBLIC KEY-----\\nMCowBQYDK2VwAyEAmsvZUyEA+GmFsWVyV8Ll1QXQXA7Fjgl+mtS/8XpOg/U=\\n-----END PUBLIC KEY-----\\n";
        let config = with_auth(&format!(
            "kid = \"k-1\"\nkeys = [{{ kid = \"k-2\", public_key_pem = \"{pem}\" }}]"
        ))
        .expect("a key set");
        assert_eq!(config.auth.kid.as_deref(), Some("k-1"));
        assert_eq!(config.auth.keys[0].kid, "k-2");
        let twice = with_auth(&format!(
            "kid = \"k-1\"\nkeys = [{{ kid = \"k-1\", public_key_pem = \"{pem}\" }}]"
        ));
        assert!(
            matches!(twice, Err(ConfigError::Invalid(m)) if m.contains("twice")),
            "a kid listed twice"
        );
    }

    #[test]
    fn a_config_without_payments_refuses_at_the_default_backlog_and_zero_is_refused() {
        let config = with_auth("").expect("dev config");
        assert_eq!(config.payments.max_backlog, MAX_PAYMENTS_BACKLOG_DEFAULT);
        let zero = PaymentsConfig { max_backlog: 0 };
        assert!(
            matches!(zero.validate(), Err(ConfigError::Invalid(m)) if m.starts_with("[payments]"))
        );
    }

    #[test]
    fn a_config_without_insights_publishes_every_minute_and_zero_is_refused() {
        let config = with_auth("").expect("dev config");
        assert_eq!(config.insights.publish_secs, INSIGHTS_PUBLISH_SECS_DEFAULT);
        assert_eq!(config.insights.stale_after_secs(), 180);
        let zero = InsightsConfig { publish_secs: 0 };
        assert!(
            matches!(zero.validate(), Err(ConfigError::Invalid(m)) if m.starts_with("[insights]"))
        );
    }

    #[test]
    fn orders_settings_out_of_range_are_refused_with_their_name_and_bounds() {
        let config = with_auth("").expect("dev config");
        assert_eq!(config.orders.archive_flush_entries, 65_536);
        assert!(config.orders.validate().is_ok());
        let refused = |orders: OrdersConfig| match orders.validate() {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("accepted: {other:?}"),
        };
        let none = OrdersConfig {
            archive_flush_entries: 0,
            ..OrdersConfig::default()
        };
        assert_eq!(
            refused(none),
            "orders.archive_flush_entries must be 1..=1000000, got 0"
        );
        let a_year_and_more = OrdersConfig {
            retention_days: 367,
            ..OrdersConfig::default()
        };
        assert_eq!(
            refused(a_year_and_more),
            "orders.retention_days must be 1..=366, got 367"
        );
    }
}
