//! `huddle entity ...` and `huddle department ...`.

use clap::{ArgAction, Args, Subcommand};
use huddle_proto::v1;

use crate::client::output::{self, Out};
use crate::client::{Client, Connection};

#[derive(Debug, Args)]
pub struct EntityArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: EntityCommand,
}

#[derive(Debug, Subcommand)]
pub enum EntityCommand {
    /// Create an entity (a tenant that owns departments and rooms). Needs the
    /// admin key. Prints the new entity.
    Create {
        /// Name, 1-200 characters.
        #[arg(long)]
        name: String,
        /// Free-form kind of organisation ("company", "school", ...).
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Default instructions for the agents in every room of this entity.
        #[arg(long)]
        instructions: Option<String>,
        /// No room of this entity admits more participants than this
        /// (1-10000) [default: 100].
        #[arg(long, value_name = "N")]
        max_participants: Option<u32>,
        /// Days to keep recordings.
        #[arg(long, value_name = "DAYS")]
        retention_days: Option<u32>,
    },
    /// List entities: all of them with the admin key, its own with an entity key.
    List,
    /// Show one entity.
    Get {
        /// The entity's id.
        id: String,
    },
    /// Change an entity. Only the flags given are changed.
    Update {
        /// The entity's id.
        id: String,
        /// New name, 1-200 characters.
        #[arg(long)]
        name: Option<String>,
        /// New kind of organisation.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// New default instructions.
        #[arg(long)]
        instructions: Option<String>,
        /// New participant cap for the entity's rooms (1-10000).
        #[arg(long, value_name = "N")]
        max_participants: Option<u32>,
        /// New recording retention, in days.
        #[arg(long, value_name = "DAYS")]
        retention_days: Option<u32>,
        /// Activate or deactivate the entity; rooms of an inactive entity
        /// cannot start or be joined.
        #[arg(long, action = ArgAction::Set, value_name = "true|false")]
        active: Option<bool>,
    },
    /// Create an API key scoped to one entity. Needs the admin key. The
    /// secret is printed once; only its SHA-256 is stored.
    CreateKey {
        /// The entity the key belongs to.
        entity_id: String,
    },
    /// List an entity's API keys (id, prefix, created, last used, revoked);
    /// never their secrets.
    Keys {
        /// The entity whose keys to list.
        entity_id: String,
    },
    /// Revoke an API key at once; it fails authentication from then on.
    RevokeKey {
        /// The key's id (as `huddle entity keys` shows it), not its secret.
        key_id: String,
    },
}

#[derive(Debug, Args)]
pub struct DepartmentArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: DepartmentCommand,
}

#[derive(Debug, Subcommand)]
pub enum DepartmentCommand {
    /// Create a department; its instructions apply to the rooms created in it.
    Create {
        /// The entity the department belongs to.
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
        /// Name, unique within the entity.
        #[arg(long)]
        name: String,
        /// Instructions for the agents in this department's rooms (at most 8000 characters).
        #[arg(long)]
        instructions: Option<String>,
    },
    /// List an entity's departments.
    List {
        /// The entity whose departments to list.
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
    },
    /// Change a department. Only the flags given are changed.
    Update {
        /// The department's id.
        id: String,
        /// New name, unique within the entity.
        #[arg(long)]
        name: Option<String>,
        /// New instructions.
        #[arg(long)]
        instructions: Option<String>,
    },
}

fn print_entity(out: Out, e: &v1::Entity) -> anyhow::Result<()> {
    if out.is_json() {
        out.json_line(&output::entity_json(e))?
    } else {
        out.text(&output::entity_text(e))?
    }
    Ok(())
}

fn print_department(out: Out, d: &v1::Department) -> anyhow::Result<()> {
    if out.is_json() {
        out.json_line(&output::department_json(d))?
    } else {
        out.text(&output::department_text(d))?
    }
    Ok(())
}

pub async fn run_entity(c: &mut Client, cmd: EntityCommand) -> anyhow::Result<()> {
    let out = c.out;
    match cmd {
        EntityCommand::Create { name, kind, instructions, max_participants, retention_days } => {
            let req = v1::CreateEntityRequest {
                name,
                r#type: kind.unwrap_or_default(),
                default_instructions: instructions.unwrap_or_default(),
                max_participants,
                recording_retention_days: retention_days.unwrap_or_default(),
            };
            let e = c.entities.create_entity(req).await?.into_inner();
            print_entity(out, &e)
        }
        EntityCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let req = v1::ListEntitiesRequest { page_size: 500, page_token };
                let resp = c.entities.list_entities(req).await?.into_inner();
                all.extend(resp.entities);
                if resp.next_page_token.is_empty() {
                    break;
                }
                page_token = resp.next_page_token;
            }
            if out.is_json() {
                for e in &all {
                    out.json_line(&output::entity_json(e))?;
                }
            } else {
                out.text(&output::entities_table(&all))?;
            }
            Ok(())
        }
        EntityCommand::Get { id } => {
            let e = c.entities.get_entity(v1::GetEntityRequest { id }).await?.into_inner();
            print_entity(out, &e)
        }
        EntityCommand::Update { id, name, kind, instructions, max_participants, retention_days, active } => {
            let req = v1::UpdateEntityRequest {
                id,
                name,
                r#type: kind,
                default_instructions: instructions,
                max_participants,
                recording_retention_days: retention_days,
                active,
            };
            let e = c.entities.update_entity(req).await?.into_inner();
            print_entity(out, &e)
        }
        EntityCommand::CreateKey { entity_id } => {
            let r = c.entities.create_api_key(v1::CreateApiKeyRequest { entity_id }).await?.into_inner();
            if out.is_json() {
                out.json_line(&output::create_api_key_json(&r))?;
            } else {
                out.text(&output::create_api_key_text(&r))?;
            }
            Ok(())
        }
        EntityCommand::Keys { entity_id } => {
            let r = c.entities.list_api_keys(v1::ListApiKeysRequest { entity_id }).await?.into_inner();
            if out.is_json() {
                for k in &r.api_keys {
                    out.json_line(&output::api_key_json(k))?;
                }
            } else {
                out.text(&output::api_keys_table(&r.api_keys))?;
            }
            Ok(())
        }
        EntityCommand::RevokeKey { key_id } => {
            let k = c.entities.revoke_api_key(v1::RevokeApiKeyRequest { id: key_id }).await?.into_inner();
            if out.is_json() {
                out.json_line(&output::api_key_json(&k))?;
            } else {
                out.text(&output::api_key_text(&k))?;
            }
            Ok(())
        }
    }
}

pub async fn run_department(c: &mut Client, cmd: DepartmentCommand) -> anyhow::Result<()> {
    let out = c.out;
    match cmd {
        DepartmentCommand::Create { entity_id, name, instructions } => {
            let req = v1::CreateDepartmentRequest { entity_id, name, instructions: instructions.unwrap_or_default() };
            let d = c.entities.create_department(req).await?.into_inner();
            print_department(out, &d)
        }
        DepartmentCommand::List { entity_id } => {
            let resp = c.entities.list_departments(v1::ListDepartmentsRequest { entity_id }).await?.into_inner();
            if out.is_json() {
                for d in &resp.departments {
                    out.json_line(&output::department_json(d))?;
                }
            } else {
                out.text(&output::departments_table(&resp.departments))?;
            }
            Ok(())
        }
        DepartmentCommand::Update { id, name, instructions } => {
            let d = c
                .entities
                .update_department(v1::UpdateDepartmentRequest { id, name, instructions })
                .await?
                .into_inner();
            print_department(out, &d)
        }
    }
}
