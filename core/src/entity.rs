//! Entities (tenants), their departments and entity-scoped API keys.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// A tenant: every room, department and API key belongs to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    pub id: String,
    pub name: String,
    /// Free-form kind of organisation ("company", "school", ...).
    pub kind: String,
    pub default_instructions: String,
    /// No room of this entity admits more participants than this.
    pub max_participants: u32,
    pub recording_retention_days: u32,
    pub active: bool,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
}

/// What a caller supplies to create an entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEntity {
    pub name: String,
    pub kind: String,
    pub default_instructions: String,
    /// `None` takes [`crate::limits::DEFAULT_MAX_PARTICIPANTS`].
    pub max_participants: Option<u32>,
    pub recording_retention_days: u32,
}

/// A department of an entity; its name is unique within the entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub id: String,
    pub entity_id: String,
    pub name: String,
    /// At most [`crate::limits::MAX_INSTRUCTIONS_CHARS`] characters.
    pub instructions: String,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
}

/// What a caller supplies to create a department.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDepartment {
    pub entity_id: String,
    pub name: String,
    pub instructions: String,
}

/// An entity-scoped API key. Only the SHA-256 of the secret is ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub entity_id: String,
    /// Lowercase hex SHA-256 of the full secret.
    pub key_hash: String,
    /// The first characters of the secret, safe to show in listings.
    pub prefix: String,
    pub created_at_ms: Millis,
    /// When it was last used, to the minute (updated at most once a minute).
    #[serde(default)]
    pub last_used_at_ms: Option<Millis>,
    /// When it was revoked; a revoked key no longer authenticates.
    #[serde(default)]
    pub revoked_at_ms: Option<Millis>,
}
