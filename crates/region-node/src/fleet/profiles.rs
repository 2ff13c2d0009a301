//! Customer profiles: a display name and a saved default payment method
//! token, global data in a JetStream KV bucket ([`BUCKET`]), one key per
//! customer: `profile.{hash}` (`hash` is `customers::customer_hash` of the
//! token subject), the value [`Profile`] as JSON.
//!
//! Read and written on the request path (`GET`/`PUT /v1/me/profile`) by
//! whichever node the customer asks, so a customer who travels finds it on
//! every node. Unlike district data it has no home district: without NATS
//! there is no profile (the handlers answer 503), while the district keeps
//! selling (an order that names its payment method needs no profile).
//!
//! Validation lives in the newtypes [`DisplayName`] and [`PaymentToken`]:
//! a value in the bucket was valid when written.

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::customers::customer_hash;

/// The profile bucket's name.
pub const BUCKET: &str = "larder-profiles";
/// Longest display name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 100;
/// Longest payment method token, in bytes (as `POST /v1/orders` takes).
pub const MAX_PAYMENT_METHOD_BYTES: usize = protocol::orders::MAX_PAYMENT_METHOD_LEN;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile store: {0}")]
    Nats(String),
    #[error("profile store: unreadable profile: {0}")]
    Unreadable(String),
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> ProfileError {
    ProfileError::Nats(format!("{what}: {e}"))
}

/// Why a field was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("name must be 1..={MAX_NAME_CHARS} characters, not blank")]
    Name,
    #[error(
        "payment_method must be 1..={MAX_PAYMENT_METHOD_BYTES} bytes of A-Z, a-z, 0-9, '_' or '-'"
    )]
    PaymentMethod,
}

/// A display name: trimmed, 1..=[`MAX_NAME_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl TryFrom<String> for DisplayName {
    type Error = FieldError;

    fn try_from(s: String) -> Result<Self, FieldError> {
        let t = s.trim();
        if t.is_empty() || t.chars().count() > MAX_NAME_CHARS {
            return Err(FieldError::Name);
        }
        Ok(DisplayName(t.to_string()))
    }
}

impl From<DisplayName> for String {
    fn from(n: DisplayName) -> String {
        n.0
    }
}

/// A payment method token from the provider's client SDK:
/// 1..=[`MAX_PAYMENT_METHOD_BYTES`] bytes of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PaymentToken(String);

impl PaymentToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PaymentToken {
    type Error = FieldError;

    fn try_from(s: String) -> Result<Self, FieldError> {
        let token_like = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if s.is_empty() || s.len() > MAX_PAYMENT_METHOD_BYTES || !token_like {
            return Err(FieldError::PaymentMethod);
        }
        Ok(PaymentToken(s))
    }
}

impl From<PaymentToken> for String {
    fn from(t: PaymentToken) -> String {
        t.0
    }
}

/// One customer's profile, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The token subject.
    pub customer: String,
    pub name: DisplayName,
    pub payment_method: PaymentToken,
    pub updated_at: DateTime<Utc>,
}

/// The key of `customer`'s profile.
pub fn key(customer: &str) -> String {
    format!("profile.{}", customer_hash(customer))
}

/// The profiles on NATS; cheap to clone. The bucket is found (or created)
/// on first use, so a node started with NATS down still starts.
#[derive(Clone)]
pub struct Profiles {
    bucket: super::LazyBucket,
}

impl Profiles {
    /// `replicas`: copies of the bucket if this node creates it (one
    /// history entry, no expiry: a profile lives until its customer
    /// changes it).
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        let config = kv::Config {
            bucket: BUCKET.to_string(),
            description: "Larder customer profiles: display name, payment method".into(),
            history: 1,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        Profiles {
            bucket: super::LazyBucket::new(client, config),
        }
    }

    async fn store(&self) -> Result<&kv::Store, ProfileError> {
        self.bucket.get().await.map_err(ProfileError::Nats)
    }

    /// `customer`'s profile, `None` if it has none.
    pub async fn get(&self, customer: &str) -> Result<Option<Profile>, ProfileError> {
        let store = self.store().await?;
        let Some(value) = store
            .get(key(customer))
            .await
            .map_err(|e| nats_err("get", e))?
        else {
            return Ok(None);
        };
        let profile: Profile =
            serde_json::from_slice(&value).map_err(|e| ProfileError::Unreadable(e.to_string()))?;
        // A hash collision is someone else's profile: not this customer's.
        Ok((profile.customer == customer).then_some(profile))
    }

    /// Stores `profile` under its customer's key (replacing any).
    pub async fn put(&self, profile: &Profile) -> Result<(), ProfileError> {
        let store = self.store().await?;
        let value = serde_json::to_vec(profile).map_err(|e| nats_err("encode", e))?;
        store
            .put(key(&profile.customer), value.into())
            .await
            .map_err(|e| nats_err("put", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        let n = DisplayName::try_from("  Alice Å ".to_string()).expect("name");
        assert_eq!(String::from(n), "Alice Å");
        assert_eq!(
            DisplayName::try_from("   ".to_string()),
            Err(FieldError::Name)
        );
        assert!(DisplayName::try_from("é".repeat(MAX_NAME_CHARS)).is_ok());
        assert_eq!(
            DisplayName::try_from("é".repeat(MAX_NAME_CHARS + 1)),
            Err(FieldError::Name)
        );
    }

    #[test]
    fn payment_tokens_are_token_like_and_bounded_in_bytes() {
        assert!(PaymentToken::try_from("tok_visa-2".to_string()).is_ok());
        for bad in ["", "tok visa", "tok.visa", "tök", "a/b"] {
            assert_eq!(
                PaymentToken::try_from(bad.to_string()),
                Err(FieldError::PaymentMethod),
                "{bad:?}"
            );
        }
        assert!(PaymentToken::try_from("a".repeat(MAX_PAYMENT_METHOD_BYTES)).is_ok());
        assert!(PaymentToken::try_from("a".repeat(MAX_PAYMENT_METHOD_BYTES + 1)).is_err());
    }

    #[test]
    fn a_stored_profile_reads_back_and_an_invalid_one_does_not() {
        let p = Profile {
            customer: "alice".into(),
            name: DisplayName::try_from("Alice".to_string()).expect("name"),
            payment_method: PaymentToken::try_from("tok_visa".to_string()).expect("token"),
            updated_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("time"),
        };
        let json = serde_json::to_value(&p).expect("encode");
        assert_eq!(json["name"], "Alice");
        assert_eq!(json["payment_method"], "tok_visa");
        assert_eq!(serde_json::from_value::<Profile>(json).expect("decode"), p);
        let bad = serde_json::json!({
            "customer": "alice", "name": " ", "payment_method": "tok_visa",
            "updated_at": "2026-01-01T00:00:00Z"
        });
        assert!(serde_json::from_value::<Profile>(bad).is_err());
        assert_eq!(key("alice"), "profile.508b2abb65a03907");
    }
}
