//! Money: integer minor units plus an ISO 4217 currency code. Never floats.
//!
//! In code an amount travels with its currency as [`Money`], so it cannot
//! be paired with another amount's currency on the way. The wire
//! keeps its released shapes (events and API bodies carry `total`/`price`/
//! `amount` and `currency` as separate fields); their types convert to and
//! from `Money` where they are built or read.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Largest price of a single meal, in minor units (10,000.00 in a 2-decimal
/// currency). Anything above is a typo, not a meal.
pub const MAX_MEAL_PRICE_MINOR: i64 = 1_000_000;

/// An ISO 4217 alphabetic code, e.g. `USD`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, ValidationError> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(s))
        } else {
            Err(ValidationError::Currency { value: s })
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount in minor units of its currency (cents for USD).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount_minor,
            currency,
        }
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} minor units", self.amount_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_as_amount_and_currency() {
        let usd = Currency::try_from("USD".to_string()).unwrap();
        assert_eq!(Money::new(1295, usd).to_string(), "1295 USD minor units");
    }

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert!(Currency::try_from("USD".to_string()).is_ok());
        for bad in ["usd", "US", "USDD", "U$D", ""] {
            assert!(Currency::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
