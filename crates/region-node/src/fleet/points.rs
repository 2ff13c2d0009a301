//! The global bonus-point ledger: one `loyalty::Account` per customer in a
//! JetStream KV bucket ([`BUCKET`]), changed only by compare-and-set.
//!
//! Why no loyalty service: the account record is the serialization point.
//! Every change reads the record, decides with the pure `loyalty` crate and
//! writes it back naming the revision it read; a concurrent change (another
//! district spending the same balance) makes the write fail, and the loser
//! decides again against the winner's record. So two districts can never
//! overdraw, without a process in between that would be one more thing to
//! run, scale and lose. The bucket is replicated (R3 on a cluster) like the
//! rest of the global plane.
//!
//! - **Spend** ([`Ledger::reserve`]): on the confirm path, before the order
//!   is placed; refused (`503 loyalty_unavailable`) when NATS is not there.
//! - **Everything else** ([`run`]): the district's loyalty outbox
//!   (`district::loyalty`), applied from the committed state and settled
//!   with `LoyaltyApplied`. With NATS down it waits in the log.

use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use district::{Command, PromotionCommand};
use loyalty::coupon::CouponUses;
use loyalty::{Account, LoyaltyError};

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::writer::District;

/// The ledger bucket's name.
pub const BUCKET: &str = "larder-points";
/// Most compare-and-set attempts for one change before giving up.
pub const MAX_CAS_ATTEMPTS: u32 = 32;
/// Longest a reserve may take on the confirm path.
pub const RESERVE_TIMEOUT_MS: u64 = 2_000;
/// Most outbox operations applied in one round.
pub const MAX_OPS_PER_ROUND: usize = 256;
/// Reads retried this many times, [`READ_RETRY_MS`] apart, before the
/// ledger counts as unavailable (a new bucket electing its leader).
const READ_RETRIES: u32 = 30;
const READ_RETRY_MS: u64 = 100;
/// Pause before retrying operations that failed (NATS down).
const RETRY_MS: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("points ledger unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Refused(#[from] LoyaltyError),
    #[error("points ledger: record of {0} is unreadable")]
    Corrupt(String),
    #[error(transparent)]
    CouponLimit(#[from] loyalty::coupon::CouponLimit),
}

/// The account's key: `account.{hex of the customer's subject}` (subjects
/// may hold characters keys cannot; hex keeps them apart, no collisions).
pub fn key(customer: &str) -> String {
    let hex: String = customer.bytes().map(|b| format!("{b:02x}")).collect();
    format!("account.{hex}")
}

/// The ledger on NATS; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    bucket: super::LazyBucket,
}

impl Ledger {
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        let config = kv::Config {
            bucket: BUCKET.to_string(),
            description: "Larder bonus points: one account per customer".into(),
            history: 1,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        Ledger {
            bucket: super::LazyBucket::new(client, config),
        }
    }

    async fn store(&self) -> Result<&kv::Store, LedgerError> {
        self.bucket.get().await.map_err(LedgerError::Unavailable)
    }

    /// `customer`'s account and its revision (0: none yet).
    pub async fn account(&self, customer: &str) -> Result<(Account, u64), LedgerError> {
        self.read(&key(customer), customer).await
    }

    /// The record under `key` and its revision (0: none yet; `what` names
    /// it in errors).
    ///
    /// Read from the stream's leader (`STREAM.MSG.GET`), not with the KV
    /// API's direct get, which any replica may answer from behind: a stale
    /// record cannot overdraw (its revision loses the compare-and-set), but
    /// it could refuse a spend the balance covers.
    async fn read<R: Default + serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<(R, u64), LedgerError> {
        match self.read_raw(key).await? {
            Some((payload, revision)) if !payload.is_empty() => {
                let record = protocol::codec::from_postcard(&payload)
                    .map_err(|_| LedgerError::Corrupt(what.to_string()))?;
                Ok((record, revision))
            }
            _ => Ok((R::default(), 0)),
        }
    }

    /// The value under `key` and its revision, from the stream's leader
    /// (see `read` for why); retried while a new bucket has
    /// no leader yet.
    async fn read_raw(&self, key: &str) -> Result<Option<(bytes::Bytes, u64)>, LedgerError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as NotThere;
        let store = self.store().await?;
        let subject = format!("{}{key}", store.prefix);
        let mut tries = 0;
        loop {
            match store.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => return Ok(Some((m.payload, m.sequence))),
                Err(e) if e.kind() == NotThere::NoMessageFound => return Ok(None),
                // A bucket made a moment ago may not have its leader yet
                // ("no responders"); that passes within a second or two.
                Err(e) if tries < READ_RETRIES => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "points ledger: read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(READ_RETRY_MS)).await;
                }
                Err(e) => return Err(LedgerError::Unavailable(e.to_string())),
            }
        }
    }

    /// Changes `customer`'s account with `change`, by compare-and-set: on a
    /// concurrent change the record is read again and `change` decides
    /// again. A refusal from `change` is returned without writing.
    pub async fn update<T>(
        &self,
        customer: &str,
        change: impl FnMut(&mut Account) -> Result<T, LoyaltyError>,
    ) -> Result<T, LedgerError> {
        self.cas(&key(customer), customer, change).await
    }

    /// Changes coupon `code`'s fleet-wide uses, like [`Ledger::update`].
    pub async fn update_coupon<T>(
        &self,
        code: &str,
        change: impl FnMut(&mut CouponUses) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.cas(&format!("coupon.{code}"), code, change).await
    }

    async fn cas<R, T, E>(
        &self,
        key: &str,
        what: &str,
        mut change: impl FnMut(&mut R) -> Result<T, E>,
    ) -> Result<T, LedgerError>
    where
        R: Default + serde::Serialize + serde::de::DeserializeOwned,
        LedgerError: From<E>,
    {
        let store = self.store().await?;
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let (mut record, revision) = self.read::<R>(key, what).await?;
            let out = change(&mut record)?;
            let bytes = protocol::codec::to_postcard(&record)
                .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
            let written = if revision == 0 {
                store
                    .create(key, bytes.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                store
                    .update(key, bytes.into(), revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            match written {
                Ok(()) => return Ok(out),
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "points ledger: compare-and-set lost; deciding again");
                    // A short, growing pause: the winner's write reaches
                    // every replica, and racers spread out.
                    tokio::time::sleep(Duration::from_millis(2 << attempt.min(5))).await;
                }
            }
        }
        Err(LedgerError::Unavailable(format!(
            "{MAX_CAS_ATTEMPTS} compare-and-set attempts lost"
        )))
    }

    /// Reserves a use of coupon `code` (at most `max` over the fleet) for
    /// `order`, within [`RESERVE_TIMEOUT_MS`].
    pub async fn reserve_coupon(
        &self,
        code: &str,
        order: &str,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let reserve = self.update_coupon(code, |u| {
            u.reserve(order, max, now).map_err(LedgerError::CouponLimit)
        });
        within_reserve_timeout(reserve).await
    }

    /// Drops a coupon hold for an order that was not placed (best effort).
    pub async fn release_coupon_hold(&self, code: &str, order: &str) {
        let released = self.update_coupon(code, |u| Ok(u.release_hold(order)));
        if let Err(e) = released.await {
            tracing::warn!(error = %e, order, "points ledger: coupon hold not released; it lapses by itself");
        }
    }

    /// Reserves `points` of `customer`'s balance for `order` (its ledger
    /// key), within [`RESERVE_TIMEOUT_MS`].
    pub async fn reserve(
        &self,
        customer: &str,
        order: &str,
        points: i64,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let reserve = self.update(customer, |a| a.reserve(order, points, now));
        within_reserve_timeout(reserve).await
    }

    /// Drops a hold the node made for a confirm that did not place the
    /// order (best effort: a hold left behind stops counting after
    /// `loyalty::HOLD_TTL_SECS`).
    pub async fn release_hold(&self, customer: &str, order: &str) {
        let released = self.update(customer, |a| Ok(a.release_hold(order)));
        if let Err(e) = released.await {
            tracing::warn!(error = %e, order, "points ledger: hold not released; it lapses by itself");
        }
    }
}

/// A reserve is on the confirm's path: one that has not answered within
/// [`RESERVE_TIMEOUT_MS`] counts as the ledger being unavailable (503),
/// not as a confirm left waiting.
async fn within_reserve_timeout(
    reserve: impl std::future::Future<Output = Result<(), LedgerError>>,
) -> Result<(), LedgerError> {
    match tokio::time::timeout(Duration::from_millis(RESERVE_TIMEOUT_MS), reserve).await {
        Ok(r) => r,
        Err(_) => Err(LedgerError::Unavailable("reserve timed out".into())),
    }
}

impl Ledger {
    /// Registers `customer`'s share code (`share.{code}` → the customer),
    /// once: a code already held by the same customer is fine; one held by
    /// another (a 50-bit collision) stays theirs, and this customer has
    /// none (logged).
    pub async fn register_share_code(&self, customer: &str) -> Result<(), LedgerError> {
        let store = self.store().await?;
        let code = loyalty::share_code(customer);
        let key = format!("share.{code}");
        match store
            .create(&key, customer.as_bytes().to_vec().into())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                match self.share_owner(&code).await? {
                    Some(owner) if owner != customer => {
                        tracing::warn!(%code, "share code collision: kept by its first owner")
                    }
                    _ => {}
                }
                Ok(())
            }
            Err(e) => Err(LedgerError::Unavailable(e.to_string())),
        }
    }

    /// Who holds share code `code` (as parsed), read from the leader.
    pub async fn share_owner(&self, code: &str) -> Result<Option<String>, LedgerError> {
        let raw = self.read_raw(&format!("share.{code}")).await?;
        Ok(raw.and_then(|(payload, _)| String::from_utf8(payload.to_vec()).ok()))
    }
}

/// Applies the district's loyalty outbox to the ledger until `shutdown`
/// (see the module docs).
pub async fn run(ledger: Ledger, district: District, clock: Clock, mut shutdown: Shutdown) {
    let mut feed = district.subscribe_feed();
    let mut failing = false;
    let mut retry = tokio::time::interval(Duration::from_millis(RETRY_MS));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due: Vec<(String, district::loyalty::DueOp)> = district
            .state()
            .loyalty()
            .due()
            .iter()
            .take(MAX_OPS_PER_ROUND)
            .map(|(id, op)| (id.clone(), op.clone()))
            .collect();
        if !due.is_empty() {
            let applied = tokio::select! {
                a = apply(&ledger, &due, clock.now()) => a,
                () = shutdown.triggered() => return,
            };
            let failed = due.len() - applied.len();
            if failed > 0 && !failing {
                tracing::warn!(failed, "points ledger: operations not applied; retrying");
            } else if failing && failed == 0 {
                tracing::info!("points ledger: operations applied again");
            }
            failing = failed > 0;
            if !applied.is_empty() {
                let cmd = Command::Promotion(PromotionCommand::LoyaltyApplied { op_ids: applied });
                match district.submit(cmd).await {
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "points ledger: could not record applied operations");
                        failing = true;
                    }
                }
            }
        }
        tokio::select! {
            batch = feed.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = batch {
                    return;
                }
            }
            _ = retry.tick(), if failing => {}
            () = shutdown.triggered() => return,
        }
    }
}

/// The op ids of `due` the ledger now holds (applied now or before).
async fn apply(
    ledger: &Ledger,
    due: &[(String, district::loyalty::DueOp)],
    now: DateTime<Utc>,
) -> Vec<String> {
    use district::loyalty::LedgerOp;
    let changes = due.iter().map(|(id, d)| async move {
        let r = match &d.op {
            LedgerOp::Account(op) => {
                ledger
                    .update(&d.customer, |a| {
                        a.apply(id, op, now);
                        Ok(())
                    })
                    .await
            }
            LedgerOp::ShareCode => ledger.register_share_code(&d.customer).await,
            LedgerOp::Coupon { code, op } => {
                ledger
                    .update_coupon(code, |u| {
                        u.apply(id, op, now);
                        Ok(())
                    })
                    .await
            }
        };
        (id, r)
    });
    futures::future::join_all(changes)
        .await
        .into_iter()
        .filter_map(|(id, r)| match r {
            Ok(()) => Some(id.clone()),
            Err(e) => {
                tracing::debug!(error = %e, op = %id, "points ledger: op not applied");
                None
            }
        })
        .collect()
}
