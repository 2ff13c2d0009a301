//! Authentication and roles: Ed25519-signed JWTs (alg EdDSA) verified at the
//! node with the public key from its config — no call home.
//!
//! Owns the claims shape, minting (development only) and verification. Route
//! handlers state which roles they accept through [`Caller::require`].

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Longest lifetime `region-node token` will mint, in seconds (30 days).
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Pos,
    Kitchen,
    Fridge,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
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
    #[error("role {0:?} may not do this")]
    Forbidden(Role),
    #[error("bad key: {0}")]
    Key(String),
}

#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn from_pem(public_pem: &str, leeway_secs: u64) -> Result<Self, AuthError> {
        let key = DecodingKey::from_ed_pem(public_pem.as_bytes())
            .map_err(|e| AuthError::Key(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Verifier { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Reads `Authorization: Bearer <token>`.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        self.verify(token).map(Caller)
    }
}

pub fn mint(private_pem: &str, claims: &Claims) -> Result<String, AuthError> {
    let key = EncodingKey::from_ed_pem(private_pem.as_bytes())
        .map_err(|e| AuthError::Key(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key)
        .map_err(|e| AuthError::Key(e.to_string()))
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
