//! The card processor port and the sandbox provider that ships by default.
//!
//! A provider call carries an idempotency key (the order id), as real
//! processors' APIs do: calling twice with the same key returns the first
//! outcome and moves money once. The sandbox keeps its ledger in sled so this
//! holds across restarts, and exposes it so tests can count real charges.
//!
//! The sandbox runs in process (one payments instance, the default) or as a
//! service of its own (`payments sandbox-processor`, [`crate::processor`]),
//! reached through [`crate::remote::HttpProcessor`]: several instances must
//! share one processor, since its idempotency key is what keeps two
//! instances from charging an order twice.

use std::time::Duration;

use protocol::money::Money;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderOutcome {
    Approved { reference: String },
    Declined { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// A card processor.
pub trait Provider: Send + Sync + 'static {
    /// Captures `amount` (with its currency, as processors take it).
    fn charge(
        &self,
        idempotency_key: &str,
        amount: &Money,
        payment_method: &str,
    ) -> impl std::future::Future<Output = Result<ProviderOutcome, ProviderError>> + Send;

    fn refund(
        &self,
        idempotency_key: &str,
        amount: &Money,
    ) -> impl std::future::Future<Output = Result<ProviderOutcome, ProviderError>> + Send;

    /// The reference of a capture already made under this key, if any. Asked
    /// before refusing a late request: a capture made just before a crash
    /// must be reported (and so refunded), never silently kept.
    fn captured(
        &self,
        idempotency_key: &str,
    ) -> impl std::future::Future<Output = Result<Option<String>, ProviderError>> + Send;
}

/// Payment method token the sandbox always declines.
pub const SANDBOX_DECLINE_TOKEN: &str = "tok_decline";

#[derive(Debug, Clone)]
pub struct SandboxRules {
    /// Simulated processor latency per call.
    pub latency: Duration,
    /// Charges above this amount (minor units) are declined.
    pub amount_limit: i64,
}

impl Default for SandboxRules {
    fn default() -> Self {
        SandboxRules {
            latency: Duration::from_millis(0),
            amount_limit: 50_000,
        }
    }
}

/// What the sandbox did for one idempotency key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// Money actually captured (0 or 1; more would be a double charge).
    pub charges: u32,
    pub refunds: u32,
    pub declines: u32,
    pub amount: i64,
}

#[derive(Clone)]
pub struct Sandbox {
    rules: SandboxRules,
    ledger: sled::Tree,
}

impl Sandbox {
    pub fn new(db: &sled::Db, rules: SandboxRules) -> Result<Self, sled::Error> {
        Ok(Sandbox {
            rules,
            ledger: db.open_tree("sandbox_ledger")?,
        })
    }

    pub fn entry(&self, key: &str) -> LedgerEntry {
        self.ledger
            .get(key)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<LedgerJson>(&b).ok())
            .map(LedgerEntry::from)
            .unwrap_or_default()
    }

    pub fn totals(&self) -> LedgerEntry {
        self.ledger
            .iter()
            .filter_map(|kv| kv.ok())
            .filter_map(|(_, v)| serde_json::from_slice::<LedgerJson>(&v).ok())
            .map(LedgerEntry::from)
            .fold(LedgerEntry::default(), |a, e| LedgerEntry {
                charges: a.charges + e.charges,
                refunds: a.refunds + e.refunds,
                declines: a.declines + e.declines,
                amount: a.amount + e.amount,
            })
    }

    /// The simulated latency. None at 0 ms: even a zero sleep waits for
    /// the timer wheel's next tick (about a millisecond).
    async fn pause(&self) {
        if !self.rules.latency.is_zero() {
            tokio::time::sleep(self.rules.latency).await;
        }
    }

    fn update(
        &self,
        key: &str,
        f: impl Fn(&mut LedgerEntry),
    ) -> Result<LedgerEntry, ProviderError> {
        let out = self
            .ledger
            .update_and_fetch(key, |old| {
                let mut e = old
                    .and_then(|b| serde_json::from_slice::<LedgerJson>(b).ok())
                    .map(LedgerEntry::from)
                    .unwrap_or_default();
                f(&mut e);
                serde_json::to_vec(&LedgerJson::from(&e)).ok()
            })
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        // No sync of its own: the service records the outcome in the book
        // (same sled database) and that flush and sync makes both durable.
        Ok(out
            .and_then(|b| serde_json::from_slice::<LedgerJson>(&b).ok())
            .map(LedgerEntry::from)
            .unwrap_or_default())
    }
}

#[derive(serde::Deserialize, Serialize)]
struct LedgerJson {
    charges: u32,
    refunds: u32,
    declines: u32,
    amount: i64,
}

impl From<LedgerJson> for LedgerEntry {
    fn from(j: LedgerJson) -> Self {
        LedgerEntry {
            charges: j.charges,
            refunds: j.refunds,
            declines: j.declines,
            amount: j.amount,
        }
    }
}

impl From<&LedgerEntry> for LedgerJson {
    fn from(e: &LedgerEntry) -> Self {
        LedgerJson {
            charges: e.charges,
            refunds: e.refunds,
            declines: e.declines,
            amount: e.amount,
        }
    }
}

impl Provider for Sandbox {
    async fn captured(&self, key: &str) -> Result<Option<String>, ProviderError> {
        Ok((self.entry(key).charges > 0).then(|| format!("sbx_ch_{key}")))
    }

    async fn charge(
        &self,
        key: &str,
        amount: &Money,
        method: &str,
    ) -> Result<ProviderOutcome, ProviderError> {
        self.pause().await;
        // The sandbox has one limit for every currency.
        let amount = amount.amount_minor;
        let declined = method == SANDBOX_DECLINE_TOKEN || amount > self.rules.amount_limit;
        if declined {
            self.update(key, |e| {
                if e.charges == 0 {
                    e.declines += 1
                }
            })?;
            let reason = if method == SANDBOX_DECLINE_TOKEN {
                "card_declined"
            } else {
                "amount_over_limit"
            };
            return Ok(ProviderOutcome::Declined {
                reason: reason.into(),
            });
        }
        // Idempotent per key: a second call with the same key captures nothing.
        self.update(key, |e| {
            if e.charges == 0 {
                e.charges = 1;
                e.amount = amount;
            }
        })?;
        Ok(ProviderOutcome::Approved {
            reference: format!("sbx_ch_{key}"),
        })
    }

    async fn refund(&self, key: &str, _amount: &Money) -> Result<ProviderOutcome, ProviderError> {
        self.pause().await;
        let entry = self.entry(key);
        if entry.charges == 0 {
            return Ok(ProviderOutcome::Declined {
                reason: "nothing_captured".into(),
            });
        }
        self.update(key, |e| {
            if e.refunds == 0 {
                e.refunds = 1;
                e.amount = 0;
            }
        })?;
        Ok(ProviderOutcome::Approved {
            reference: format!("sbx_re_{key}"),
        })
    }
}
