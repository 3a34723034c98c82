//! API keys and the scope a request runs in.
//!
//! The admin key may do everything. Entity keys (`hk_` + 43 random base62
//! characters, about 256 bits) are shown once at creation; only their
//! SHA-256 is stored, and lookups go by that hash.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use huddle_core::{ApiKey, new_id, now_ms};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::Runtime;
use crate::error::ApiError;

/// What a caller may see and do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Only this entity's departments and rooms.
    Entity(String),
}

impl Scope {
    /// Whether this scope may see things of `entity_id`.
    pub fn sees(&self, entity_id: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Entity(own) => own == entity_id,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Scope::Admin)
    }
}

/// Lowercase hex SHA-256 of a secret.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A fresh entity key: its record (hash and prefix only) and the secret.
pub fn generate_key(entity_id: &str) -> (ApiKey, String) {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let body: String = (0..43).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    let secret = format!("hk_{body}");
    let key = ApiKey {
        id: new_id(),
        entity_id: entity_id.to_string(),
        key_hash: hash_key(&secret),
        prefix: secret[..10].to_string(),
        created_at_ms: now_ms(),
    };
    (key, secret)
}

/// A random admin key for `huddle serve` when none is configured.
pub fn generate_admin_key() -> String {
    let (_, secret) = generate_key("admin");
    format!("hadm_{}", &secret[3..])
}

/// Equal-time comparison of two byte strings (length may leak; content does not).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Resolves bearer tokens to scopes, caching entity keys briefly.
pub struct Authenticator {
    admin_key_hash: String,
    cache: DashMap<String, (Scope, Instant)>,
    ttl: Duration,
}

impl Authenticator {
    pub fn new(admin_key: &str) -> Self {
        Authenticator { admin_key_hash: hash_key(admin_key), cache: DashMap::new(), ttl: Duration::from_secs(30) }
    }

    /// The scope of an `authorization` header value (`Bearer <key>`).
    pub async fn authenticate(&self, rt: &Runtime, header: Option<&str>) -> Result<Scope, ApiError> {
        let secret = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(ApiError::Unauthenticated)?;
        let hash = hash_key(secret);
        if constant_time_eq(hash.as_bytes(), self.admin_key_hash.as_bytes()) {
            return Ok(Scope::Admin);
        }
        if let Some(hit) = self.cache.get(&hash)
            && hit.1.elapsed() < self.ttl
        {
            return Ok(hit.0.clone());
        }
        match rt.store().find_api_key(&hash).await {
            Ok(key) => {
                let scope = Scope::Entity(key.entity_id);
                if self.cache.len() > 10_000 {
                    self.cache.clear();
                }
                self.cache.insert(hash, (scope.clone(), Instant::now()));
                Ok(scope)
            }
            Err(huddle_storage::StorageError::NotFound { .. }) => Err(ApiError::Unauthenticated),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let (a, sa) = generate_key("e1");
        let (b, sb) = generate_key("e1");
        assert_ne!(sa, sb);
        assert_eq!(sa.len(), 46);
        assert!(sa.starts_with("hk_"));
        assert_eq!(a.key_hash, hash_key(&sa));
        assert_ne!(a.key_hash, b.key_hash);
        assert!(!a.key_hash.contains(&sa[3..]));
        assert_eq!(a.prefix, &sa[..10]);
    }

    #[test]
    fn scopes() {
        assert!(Scope::Admin.sees("x"));
        assert!(Scope::Entity("x".into()).sees("x"));
        assert!(!Scope::Entity("x".into()).sees("y"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(generate_admin_key().starts_with("hadm_"));
    }
}
