//! Money: integer minor units plus an ISO 4217 currency code. Never floats.
//!
//! In code an amount travels with its currency as [`Money`], so a total
//! cannot be summed across currencies or sent with the wrong one. The wire
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

/// Two amounts in different currencies were combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot combine {left} with {right}")]
pub struct CurrencyMismatch {
    pub left: Currency,
    pub right: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount_minor,
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Money {
        Money::new(0, currency)
    }

    /// `qty` units at this price. Saturates instead of wrapping: prices and
    /// quantities are bounded by validation far below `i64::MAX`.
    pub fn times(&self, qty: u32) -> Money {
        Money::new(
            self.amount_minor.saturating_mul(i64::from(qty)),
            self.currency.clone(),
        )
    }

    /// The sum, if both are in the same currency (saturating, like [`Money::times`]).
    pub fn plus(&self, other: &Money) -> Result<Money, CurrencyMismatch> {
        if self.currency != other.currency {
            return Err(CurrencyMismatch {
                left: self.currency.clone(),
                right: other.currency.clone(),
            });
        }
        Ok(Money::new(
            self.amount_minor.saturating_add(other.amount_minor),
            self.currency.clone(),
        ))
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

    fn currency(code: &str) -> Currency {
        Currency::try_from(code.to_string()).unwrap()
    }

    #[test]
    fn money_does_not_mix_currencies() {
        let price = Money::new(1295, currency("USD"));
        assert_eq!(price.times(2), Money::new(2590, currency("USD")));
        assert_eq!(
            price.plus(&price.times(2)),
            Ok(Money::new(3885, currency("USD")))
        );
        let eur = Money::new(100, currency("EUR"));
        assert_eq!(
            price.plus(&eur).unwrap_err().to_string(),
            "cannot combine USD with EUR"
        );
        assert_eq!(price.to_string(), "1295 USD minor units");
    }

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert!(Currency::try_from("USD".to_string()).is_ok());
        for bad in ["usd", "US", "USDD", "U$D", ""] {
            assert!(Currency::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
