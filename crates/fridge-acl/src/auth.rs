//! Fridge authentication: HMAC-SHA256 signatures over the raw body and a
//! timestamp, with a bounded clock skew and secret rotation.
//!
//! The signed message is `"{timestamp}.{raw body}"`: signing the bytes as
//! sent (not a re-encoding) means the vendor's JSON or line layout never has
//! to be canonicalised, and binding the timestamp limits replays to the skew
//! window — inside it, the sequence cursor turns a replay into duplicates.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::report::Batch;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the Unix time (seconds) the fridge signed at.
pub const TIMESTAMP_HEADER: &str = "x-larder-timestamp";
/// Header carrying the lowercase hex HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-larder-signature";
/// How far the signed timestamp may be from the node's clock, either way.
/// Fridge RTCs drift by seconds a day and resync over NTP when they can;
/// five minutes tolerates a fridge that has been offline for weeks.
pub const MAX_SKEW_SECS: i64 = 300;
/// Length of the hex signature: 32 bytes of SHA-256.
const SIGNATURE_HEX_LEN: usize = 64;
/// Longest timestamp header accepted; a Unix time has 10 digits until 2286.
const MAX_TIMESTAMP_HEADER_LEN: usize = 12;

/// A fridge's signing secrets. During a rotation the node keeps the old one
/// until the fridge has uploaded with the new one, so a fridge that picks up
/// its new secret late is not locked out.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    pub current: &'a [u8],
    pub previous: Option<&'a [u8]>,
}

impl<'a> Secrets<'a> {
    pub fn new(current: &'a [u8]) -> Self {
        Secrets {
            current,
            previous: None,
        }
    }
}

/// Which secret a valid signature was made with. `Previous` tells the node
/// the fridge has not switched yet; the first `Current` means it has, and
/// the previous secret may be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUsed {
    Current,
    Previous,
}

/// Why a batch was refused before it was read. Nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the fridge has no signing secret; register one first")]
    NoSecret,
    #[error("{TIMESTAMP_HEADER} must be Unix seconds")]
    BadTimestamp,
    #[error("{TIMESTAMP_HEADER} is {skew_secs} s away from the server clock; at most {MAX_SKEW_SECS} s is allowed")]
    Skew { skew_secs: i64 },
    #[error("{SIGNATURE_HEADER} must be {SIGNATURE_HEX_LEN} hex characters")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("batch is for fridge {in_body}, not {in_path}")]
    WrongFridge { in_path: String, in_body: String },
}

impl AuthError {
    /// 401 when the sender could not be authenticated; 403 when it was, but
    /// speaks for a fridge it is not.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::WrongFridge { .. } => 403,
            _ => 401,
        }
    }
}

/// Signs `body` at `timestamp` (Unix seconds): lowercase hex HMAC-SHA256 of
/// `"{timestamp}.{body}"`. For the simulator, tests and firmware docs.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mac = mac(secret, timestamp.to_string().as_bytes(), body);
    to_hex(&mac.finalize().into_bytes())
}

/// Checks a signed upload. Runs before the body is parsed, so unauthenticated
/// bytes never reach a parser.
pub fn verify_signature(
    secrets: &Secrets<'_>,
    body: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    now: DateTime<Utc>,
) -> Result<SecretUsed, AuthError> {
    if secrets.current.is_empty() {
        return Err(AuthError::NoSecret);
    }
    let ts_text = timestamp_header.trim();
    if ts_text.is_empty()
        || ts_text.len() > MAX_TIMESTAMP_HEADER_LEN
        || !ts_text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AuthError::BadTimestamp);
    }
    let ts: i64 = ts_text.parse().map_err(|_| AuthError::BadTimestamp)?;
    let skew_secs = ts - now.timestamp();
    if skew_secs.abs() > MAX_SKEW_SECS {
        return Err(AuthError::Skew { skew_secs });
    }
    let sig = from_hex(signature_header.trim()).ok_or(AuthError::MalformedSignature)?;
    // `verify_slice` compares in constant time, so response timing does not
    // reveal how many leading bytes of a forged signature were right.
    if mac(secrets.current, ts_text.as_bytes(), body)
        .verify_slice(&sig)
        .is_ok()
    {
        return Ok(SecretUsed::Current);
    }
    if let Some(prev) = secrets.previous.filter(|p| !p.is_empty()) {
        if mac(prev, ts_text.as_bytes(), body)
            .verify_slice(&sig)
            .is_ok()
        {
            return Ok(SecretUsed::Previous);
        }
    }
    Err(AuthError::BadSignature)
}

/// A fridge's credentials speak for that fridge only: the id in the body
/// must be the id in the URL the secret was looked up by.
pub fn check_fridge(path_fridge_id: &str, batch: &Batch) -> Result<(), AuthError> {
    if batch.fridge_id == path_fridge_id {
        Ok(())
    } else {
        Err(AuthError::WrongFridge {
            in_path: path_fridge_id.to_string(),
            in_body: batch.fridge_id.to_string(),
        })
    }
}

fn mac(secret: &[u8], timestamp: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps
    // the function total without an `expect`.
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()));
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != SIGNATURE_HEX_LEN {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid ts")
    }

    const BODY: &[u8] = b"H|f-1|1741089605\nT|1|1741089600|47\n";

    #[test]
    fn known_answer_matches_the_docs() {
        // The worked example in docs/fridge-dialects.md; reproducible with
        // `printf '1741089605.H|f-1|1741089605\nT|1|1741089600|47\n' |
        //  openssl dgst -sha256 -hmac s3cret`.
        assert_eq!(
            sign(b"s3cret", 1_741_089_605, BODY),
            "a457bd6704453e19b29c292f076e11ed0cc9ed0dbe33f0261ecc353f99b90e81"
        );
    }

    #[test]
    fn accepts_current_and_previous_secret() {
        let now = at(1_741_089_605);
        let sig = sign(b"new", 1_741_089_600, BODY);
        let secrets = Secrets {
            current: b"new",
            previous: Some(b"old"),
        };
        assert_eq!(
            verify_signature(&secrets, BODY, "1741089600", &sig, now),
            Ok(SecretUsed::Current)
        );
        let old_sig = sign(b"old", 1_741_089_600, BODY);
        assert_eq!(
            verify_signature(&secrets, BODY, "1741089600", &old_sig, now),
            Ok(SecretUsed::Previous)
        );
        assert_eq!(
            verify_signature(&Secrets::new(b"new"), BODY, "1741089600", &old_sig, now),
            Err(AuthError::BadSignature)
        );
        let upper = sig.to_uppercase();
        assert_eq!(
            verify_signature(&secrets, BODY, "1741089600", &upper, now),
            Ok(SecretUsed::Current)
        );
    }

    #[test]
    fn refuses_forgeries_and_skew() {
        let now = at(1_741_089_605);
        let secrets = Secrets::new(b"s3cret");
        let sig = sign(b"s3cret", 1_741_089_600, BODY);
        let mut tampered = BODY.to_vec();
        let last_digit = tampered.len() - 2;
        tampered[last_digit] = b'9';
        assert_eq!(
            verify_signature(&secrets, &tampered, "1741089600", &sig, now),
            Err(AuthError::BadSignature)
        );
        // The timestamp is signed: moving it invalidates the signature.
        assert_eq!(
            verify_signature(&secrets, BODY, "1741089601", &sig, now),
            Err(AuthError::BadSignature)
        );
        let late = at(1_741_089_600 + MAX_SKEW_SECS + 1);
        assert_eq!(
            verify_signature(&secrets, BODY, "1741089600", &sig, late),
            Err(AuthError::Skew {
                skew_secs: -MAX_SKEW_SECS - 1
            })
        );
        let edge = at(1_741_089_600 + MAX_SKEW_SECS);
        assert!(verify_signature(&secrets, BODY, "1741089600", &sig, edge).is_ok());
        assert_eq!(
            verify_signature(&secrets, BODY, "-5", &sig, now),
            Err(AuthError::BadTimestamp)
        );
        assert_eq!(
            verify_signature(&secrets, BODY, "", &sig, now),
            Err(AuthError::BadTimestamp)
        );
        assert_eq!(
            verify_signature(&secrets, BODY, "1741089600", "abc", now),
            Err(AuthError::MalformedSignature)
        );
        assert_eq!(
            verify_signature(&secrets, BODY, "1741089600", &"zz".repeat(32), now),
            Err(AuthError::MalformedSignature)
        );
        assert_eq!(
            verify_signature(&Secrets::new(b""), BODY, "1741089600", &sig, now),
            Err(AuthError::NoSecret)
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(AuthError::BadSignature.http_status(), 401);
        assert_eq!(
            AuthError::WrongFridge {
                in_path: "a".into(),
                in_body: "b".into()
            }
            .http_status(),
            403
        );
    }
}
