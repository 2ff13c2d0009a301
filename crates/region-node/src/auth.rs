//! Authentication and roles: Ed25519-signed JWTs (alg EdDSA) verified at the
//! node with the issuer's public keys from its config — no call home.
//!
//! The issuer's keys are a key set: a token's header `kid` picks one of
//! `[[auth.keys]]` (or `[auth] public_key_pem` when it names `[auth] kid`),
//! else one of the keys published as global data in the NATS KV bucket
//! `larder-issuer-keys` (`fleet::issuer_keys` watches it and hands the set
//! to [`Verifier::set_published_keys`]); a token without `kid` is verified
//! with `[auth] public_key_pem`. Configured keys always work (a node
//! verifies with NATS down) and win over a published key of the same kid.
//! So one customer token works on every node, and a key is rotated without
//! downtime: publish the new key, sign with it, later delete the old one.
//!
//! Owns the claims shape, minting (development only) and verification. Route
//! handlers state which roles they accept through [`Caller::require`].
//! Expiry, `nbf` and `iat` are judged by the node's [`Clock`], not the
//! system's, with the configured leeway: a node on an advanced `--dev-clock`
//! expires tokens as its timers see time, and a token not yet valid (`nbf`,
//! or issued in the future) is refused. Tokens longer than
//! [`MAX_TOKEN_BYTES`] are refused before any parsing.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// Longest lifetime `region-node token` will mint, in seconds (30 days).
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;
/// Verified tokens remembered, so a client's next request skips the Ed25519
/// check (~40 µs, a tenth of the CPU at thousands of orders per second).
/// When full the cache starts over: simple, and bounded.
pub const MAX_CACHED_TOKENS: usize = 16_384;
/// Longest token accepted, in bytes (ours are a few hundred).
pub const MAX_TOKEN_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Pos,
    Kitchen,
    Fridge,
    Admin,
}

impl Claims {
    /// Who the caller is for limits that count per caller: role and
    /// subject (`pos:till-3`), so a customer and a till named alike are
    /// counted apart.
    pub fn caller_key(&self) -> String {
        format!("{}:{}", self.role, self.sub)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Customer => "customer",
            Role::Pos => "pos",
            Role::Kitchen => "kitchen",
            Role::Fridge => "fridge",
            Role::Admin => "admin",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    /// Not before (Unix seconds), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fridge_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kitchen_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("a {0} token may not do this")]
    Forbidden(Role),
    #[error("bad key: {0}")]
    Key(String),
}

/// The keys published in the issuer-key bucket, by `kid`, and which
/// version of that set they are.
#[derive(Default)]
struct Published {
    /// Bumped on every change: a token verified under an older set is
    /// checked again (its key may have been deleted).
    generation: u64,
    by_kid: std::collections::HashMap<String, DecodingKey>,
}

/// Token → its claims and the [`Published`] generation it was verified
/// under.
type VerifiedCache = std::collections::HashMap<Box<str>, (Claims, u64)>;

#[derive(Clone)]
pub struct Verifier {
    /// For tokens without `kid`.
    key: DecodingKey,
    /// The configured key set, by `kid`.
    by_kid: std::sync::Arc<std::collections::HashMap<String, DecodingKey>>,
    /// The published key set (global data), replaced as the bucket changes.
    published: std::sync::Arc<arc_swap::ArcSwap<Published>>,
    validation: Validation,
    leeway_secs: u64,
    clock: Clock,
    /// Token → its claims, for tokens whose signature checked out. Keyed by
    /// the whole token, so only a byte-identical token can hit.
    verified: std::sync::Arc<std::sync::Mutex<VerifiedCache>>,
}

impl Verifier {
    /// The key set of `[auth]` (see the module docs). `clock` is the
    /// node's: every expiry check reads it.
    pub fn from_config(auth: &crate::config::AuthConfig, clock: Clock) -> Result<Self, AuthError> {
        let mut verifier = Self::from_pem(&auth.public_key_pem, auth.leeway_secs, clock)?;
        let mut by_kid = std::collections::HashMap::new();
        if let Some(kid) = &auth.kid {
            by_kid.insert(kid.clone(), verifier.key.clone());
        }
        for k in &auth.keys {
            let key = DecodingKey::from_ed_pem(k.public_key_pem.as_bytes())
                .map_err(|e| AuthError::Key(format!("key {}: {e}", k.kid)))?;
            by_kid.insert(k.kid.clone(), key);
        }
        verifier.by_kid = std::sync::Arc::new(by_kid);
        Ok(verifier)
    }

    /// One key for every token, whatever its `kid`. `clock` is the
    /// node's: every expiry check reads it.
    pub fn from_pem(public_pem: &str, leeway_secs: u64, clock: Clock) -> Result<Self, AuthError> {
        let key = DecodingKey::from_ed_pem(public_pem.as_bytes())
            .map_err(|e| AuthError::Key(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // jsonwebtoken would compare `exp` with the system clock; expiry is
        // checked below against the node's clock instead.
        validation.validate_exp = false;
        Ok(Verifier {
            key,
            by_kid: Default::default(),
            published: Default::default(),
            validation,
            leeway_secs,
            clock,
            verified: Default::default(),
        })
    }

    /// Verifies `token` at the node clock's now.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
        self.verify_at(token, now)
    }

    /// `verify` with the time passed in (Unix seconds).
    pub fn verify_at(&self, token: &str, now_secs: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(format!(
                "token longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let published = self.published.load();
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|cache| cache.get(token).cloned())
            .filter(|(_, generation)| *generation == published.generation);
        if let Some((claims, _)) = cached {
            // The signature was checked once; the times must be checked every time.
            self.check_times(&claims, now_secs)?;
            return Ok(claims);
        }
        let key = self.key_for(token, &published)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(rejection(&e).into()))?;
        self.check_times(&claims, now_secs)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
            cache.insert(token.into(), (claims.clone(), published.generation));
        }
        Ok(claims)
    }

    /// The key a token names in its header `kid`: a configured one, else a
    /// published one; the default key for a token without `kid`, or for
    /// every kid no key set names when none is configured (the single-key
    /// config of old).
    fn key_for<'a>(
        &'a self,
        token: &str,
        published: &'a Published,
    ) -> Result<&'a DecodingKey, AuthError> {
        if self.by_kid.is_empty() && published.by_kid.is_empty() {
            return Ok(&self.key);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(rejection(&e).into()))?;
        let Some(kid) = header.kid else {
            return Ok(&self.key);
        };
        match (self.by_kid.get(&kid), published.by_kid.get(&kid)) {
            (Some(key), _) | (None, Some(key)) => Ok(key),
            (None, None) if self.by_kid.is_empty() => Ok(&self.key),
            (None, None) => Err(AuthError::Invalid(
                "token signed with an unknown key (kid)".into(),
            )),
        }
    }

    /// Replaces the published key set (what the issuer-key bucket holds
    /// now). Tokens verified before are checked again on their next use.
    pub fn set_published_keys(&self, by_kid: std::collections::HashMap<String, DecodingKey>) {
        let generation = self.published.load().generation + 1;
        self.published
            .store(std::sync::Arc::new(Published { generation, by_kid }));
    }

    /// `exp`, `nbf` and `iat` against `now_secs`, each with the leeway.
    /// How long `claims` stay valid from the node clock's now: `exp` plus
    /// the leeway (what a WebSocket session waits for before it ends).
    pub fn time_left(&self, claims: &Claims) -> std::time::Duration {
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
        let ends = claims.exp.saturating_add(self.leeway_secs);
        std::time::Duration::from_secs(ends.saturating_sub(now))
    }

    fn check_times(&self, claims: &Claims, now_secs: u64) -> Result<(), AuthError> {
        let leeway = self.leeway_secs;
        if claims.exp.saturating_add(leeway) < now_secs {
            return Err(AuthError::Invalid("token expired".into()));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now_secs.saturating_add(leeway))
        {
            return Err(AuthError::Invalid("token not valid yet (nbf)".into()));
        }
        if claims.iat > now_secs.saturating_add(leeway) {
            return Err(AuthError::Invalid(
                "token issued in the future (iat)".into(),
            ));
        }
        Ok(())
    }

    /// Reads `Authorization: Bearer <token>`; the scheme is case-insensitive
    /// (RFC 9110 §11.1).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        self.verify(token).map(Caller)
    }
}

/// Why a token was refused, in the caller's terms: never the library's
/// error text (it lists algorithms and claim internals).
fn rejection(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "token signature does not verify",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "token must be signed with EdDSA",
        K::MissingRequiredClaim(_) => "token lacks a required claim (sub, exp)",
        K::Json(_) => "token claims are not what this API issues",
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not valid yet (nbf)",
        _ => "token is malformed",
    }
}

pub fn mint(private_pem: &str, claims: &Claims) -> Result<String, AuthError> {
    mint_with_kid(private_pem, None, claims)
}

/// [`mint`] with the key's id in the header, when it has one.
pub fn mint_with_kid(
    private_pem: &str,
    kid: Option<&str>,
    claims: &Claims,
) -> Result<String, AuthError> {
    let key = EncodingKey::from_ed_pem(private_pem.as_bytes())
        .map_err(|e| AuthError::Key(e.to_string()))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| AuthError::Key(e.to_string()))
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    pub fn require(&self, roles: &[Role]) -> Result<&Claims, AuthError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(AuthError::Forbidden(self.0.role))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (String, String) {
        let cfg = crate::config::Config::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/dev/region-detroit.toml"
        )))
        .expect("dev config");
        (
            cfg.auth.public_key_pem,
            cfg.auth.private_key_pem.expect("dev private key"),
        )
    }

    fn unix_secs(clock: &Clock) -> u64 {
        u64::try_from(clock.now().timestamp()).unwrap()
    }

    /// A customer token issued at `now`, valid for 60 s.
    fn alice_for_a_minute(now: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            role: Role::Customer,
            exp: now + 60,
            iat: now,
            nbf: None,
            fridge_id: None,
            kitchen_id: None,
        }
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let (public, private) = keys();
        let v = Verifier::from_pem(&public, 0, Clock::system()).unwrap();
        let now = unix_secs(&Clock::system());
        let claims = alice_for_a_minute(now);
        let token = mint(&private, &claims).unwrap();
        assert_eq!(v.verify_at(&token, now).unwrap(), claims);
        assert_eq!(
            v.verify_at(&token, now + 30).unwrap(),
            claims,
            "from the cache"
        );
        assert!(
            v.verify_at(&token, now + 61).is_err(),
            "expired, cached or not"
        );
    }

    #[test]
    fn expiry_follows_the_node_clock_not_the_system_clock() {
        let (public, private) = keys();
        let clock = Clock::adjustable();
        let v = Verifier::from_pem(&public, 30, clock.clone()).unwrap();
        let now = unix_secs(&clock);
        let claims = alice_for_a_minute(now);
        let token = mint(&private, &claims).unwrap();
        assert_eq!(v.verify(&token).unwrap(), claims);
        clock.advance(chrono::Duration::seconds(80)).unwrap();
        assert!(v.verify(&token).is_ok(), "past exp, within the 30 s leeway");
        clock.advance(chrono::Duration::seconds(20)).unwrap();
        assert!(
            matches!(v.verify(&token), Err(AuthError::Invalid(_))),
            "expired by the node's clock although the system's is before exp"
        );
    }

    /// A second issuer key (the foreign test key's pair).
    const SECOND_PRIVATE: &str = include_str!("../../../tests/fixtures/foreign-ed25519.pem");
    const SECOND_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAmsvZUyEA+GmFsWVyV8Ll1QXQXA7Fjgl+mtS/8XpOg/U=
-----END PUBLIC KEY-----
";

    #[test]
    fn a_tokens_kid_picks_its_key_and_a_token_without_one_uses_the_default() {
        let (public, private) = keys();
        let auth = crate::config::AuthConfig {
            public_key_pem: public,
            kid: Some("k-2026-11".into()),
            keys: vec![crate::config::KeyConfig {
                kid: "k-2026-12".into(),
                public_key_pem: SECOND_PUBLIC.into(),
            }],
            private_key_pem: None,
            leeway_secs: 0,
        };
        let v = Verifier::from_config(&auth, Clock::system()).unwrap();
        let now = unix_secs(&Clock::system());
        let claims = alice_for_a_minute(now);
        let old = mint(&private, &claims).unwrap();
        assert_eq!(
            v.verify_at(&old, now).unwrap(),
            claims,
            "no kid: default key"
        );
        let old_named = mint_with_kid(&private, Some("k-2026-11"), &claims).unwrap();
        assert_eq!(v.verify_at(&old_named, now).unwrap(), claims);
        let new = mint_with_kid(SECOND_PRIVATE, Some("k-2026-12"), &claims).unwrap();
        assert_eq!(
            v.verify_at(&new, now).unwrap(),
            claims,
            "the rotated-in key"
        );
        let wrong = mint_with_kid(SECOND_PRIVATE, Some("k-2026-11"), &claims).unwrap();
        assert!(v.verify_at(&wrong, now).is_err(), "kid names another key");
        let unknown = mint_with_kid(SECOND_PRIVATE, Some("k-1999"), &claims).unwrap();
        assert!(
            matches!(v.verify_at(&unknown, now), Err(AuthError::Invalid(m)) if m.contains("unknown key")),
        );
        let unnamed = mint(SECOND_PRIVATE, &claims).unwrap();
        assert!(
            v.verify_at(&unnamed, now).is_err(),
            "no kid: only the default key"
        );
    }

    #[test]
    fn a_published_key_verifies_its_kid_until_it_is_withdrawn() {
        let (public, private) = keys();
        let v = Verifier::from_pem(&public, 0, Clock::system()).unwrap();
        let now = unix_secs(&Clock::system());
        let claims = alice_for_a_minute(now);
        let token = mint_with_kid(SECOND_PRIVATE, Some("k-bucket"), &claims).unwrap();
        assert!(v.verify_at(&token, now).is_err(), "not published yet");
        let key = DecodingKey::from_ed_pem(SECOND_PUBLIC.as_bytes()).unwrap();
        v.set_published_keys([("k-bucket".to_string(), key)].into());
        assert_eq!(v.verify_at(&token, now).unwrap(), claims);
        let dev = mint(&private, &claims).unwrap();
        assert_eq!(
            v.verify_at(&dev, now).unwrap(),
            claims,
            "no kid: default key"
        );
        v.set_published_keys(Default::default());
        assert!(
            v.verify_at(&token, now).is_err(),
            "withdrawn: the cached verification is not used"
        );
    }

    #[test]
    fn a_single_key_config_verifies_whatever_the_kid() {
        // The old shape, `[auth] public_key_pem` alone, behaves as before.
        let (public, private) = keys();
        let auth = crate::config::AuthConfig {
            public_key_pem: public,
            kid: None,
            keys: vec![],
            private_key_pem: None,
            leeway_secs: 0,
        };
        let v = Verifier::from_config(&auth, Clock::system()).unwrap();
        let now = unix_secs(&Clock::system());
        let claims = alice_for_a_minute(now);
        let named = mint_with_kid(&private, Some("anything"), &claims).unwrap();
        assert_eq!(v.verify_at(&named, now).unwrap(), claims);
    }

    #[test]
    fn a_token_differing_in_one_byte_is_checked_again() {
        let (public, private) = keys();
        let v = Verifier::from_pem(&public, 0, Clock::system()).unwrap();
        let claims = Claims {
            sub: "alice".into(),
            role: Role::Customer,
            exp: 4_000_000_000,
            iat: 0,
            nbf: None,
            fridge_id: None,
            kitchen_id: None,
        };
        let token = mint(&private, &claims).unwrap();
        v.verify(&token).unwrap();
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(v.verify(&forged).is_err());
    }
}
