//! Money: integer minor units plus an ISO 4217 currency code. Never floats.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert!(Currency::try_from("USD".to_string()).is_ok());
        for bad in ["usd", "US", "USDD", "U$D", ""] {
            assert!(Currency::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
