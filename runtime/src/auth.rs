//! API keys and the scope a request runs in.
//!
//! The admin key may do everything. Entity keys (`hk_` + 43 random base62
//! characters, about 256 bits) are shown once at creation; only their
//! SHA-256 is stored, and lookups go by that hash.
//!
//! A key found in storage is trusted for [`KEY_CACHE_TTL`] on the node that
//! looked it up. Revoking a key or deactivating its entity drops it from this
//! node's cache at once; other nodes refuse it within [`KEY_CACHE_TTL`].

use std::sync::atomic::{AtomicU64, Ordering};
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
        last_used_at_ms: None,
        revoked_at_ms: None,
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

/// How long a node trusts an entity key it found in storage without looking again:
/// the longest a revocation or deactivation made on another node takes to apply here.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Keys in the cache before it is emptied (a bound on memory, not a working-set size).
const KEY_CACHE_MAX: usize = 10_000;

struct CachedKey {
    key_id: String,
    scope: Scope,
    checked: Instant,
}

/// Entity keys this node found in storage recently, by hash; shared by every
/// [`Authenticator`] of a runtime so that a revocation through any [`crate::Api`]
/// applies at once.
#[derive(Default)]
pub(crate) struct KeyCache {
    keys: DashMap<String, CachedKey>,
    /// Bumped by every forget: a lookup that started before one does not cache.
    generation: AtomicU64,
}

impl KeyCache {
    /// Drops a key (after its revocation).
    pub(crate) fn forget_key(&self, key_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.keys.retain(|_, k| k.key_id != key_id);
    }

    /// Drops every key of an entity (after it was deactivated).
    pub(crate) fn forget_entity(&self, entity_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.keys.retain(|_, k| !matches!(&k.scope, Scope::Entity(e) if e == entity_id));
    }
}

/// Resolves bearer tokens to scopes, caching entity keys for [`KEY_CACHE_TTL`].
pub struct Authenticator {
    admin_key_hash: String,
}

impl Authenticator {
    pub fn new(admin_key: &str) -> Self {
        Authenticator { admin_key_hash: hash_key(admin_key) }
    }

    /// The scope of an `authorization` header value (`Bearer <key>`). Unknown and
    /// revoked keys, and keys of inactive entities, are `Unauthenticated`.
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
        let cache = rt.key_cache();
        if let Some(hit) = cache.keys.get(&hash)
            && hit.checked.elapsed() < KEY_CACHE_TTL
        {
            return Ok(hit.scope.clone());
        }
        let generation = cache.generation.load(Ordering::Acquire);
        let key = match rt.store().find_api_key(&hash).await {
            Ok(key) => key,
            Err(huddle_storage::StorageError::NotFound { .. }) => {
                cache.keys.remove(&hash);
                return Err(ApiError::Unauthenticated);
            }
            Err(e) => return Err(e.into()),
        };
        let now = now_ms();
        if key.last_used_at_ms.is_none_or(|t| now - t >= huddle_storage::API_KEY_TOUCH_INTERVAL_MS) {
            let (store, key_id) = (rt.store().clone(), key.id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_api_key(&key_id, now).await {
                    tracing::warn!(%key_id, error = %e, "cannot record an api key's last use");
                }
            });
        }
        let scope = Scope::Entity(key.entity_id);
        if cache.keys.len() > KEY_CACHE_MAX {
            cache.keys.clear();
        }
        cache.keys.insert(hash.clone(), CachedKey { key_id: key.id, scope: scope.clone(), checked: Instant::now() });
        if cache.generation.load(Ordering::Acquire) != generation {
            // A revocation or deactivation ran since the lookup began: look again next time.
            cache.keys.remove(&hash);
        }
        Ok(scope)
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
