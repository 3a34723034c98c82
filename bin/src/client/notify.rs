//! `huddle endpoint ...` (webhook endpoints) and `huddle notify ...` (send and
//! inspect notifications).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use huddle_proto::v1;
use serde_json::json;

use crate::client::output::{self, Out};
use crate::client::{Client, Connection};

#[derive(Debug, Args)]
pub struct EndpointArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: EndpointCommand,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Register a webhook endpoint; prints its id and its signing secret.
    ///
    /// Deliveries are signed as Standard Webhooks specify (headers webhook-id,
    /// webhook-timestamp, webhook-signature; HMAC-SHA256 with the secret's
    /// base64-decoded bytes). Loopback and private addresses are refused unless
    /// the server runs with notify.allow_private_targets = true.
    Create {
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
        /// Where to POST (http or https).
        #[arg(long)]
        url: String,
        /// Only these event types (repeatable); none means every type.
        #[arg(long = "event-type", value_name = "TYPE")]
        event_types: Vec<String>,
        /// An extra header sent with every delivery, as NAME:VALUE (repeatable).
        #[arg(long = "header", value_name = "NAME:VALUE")]
        headers: Vec<String>,
    },
    /// List an entity's endpoints (secrets included).
    List {
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
    },
    /// Stop delivering to an endpoint; sends to it are refused from then on.
    Disable { id: String },
    /// Give an endpoint a new secret; the old one keeps signing for the
    /// server's overlap window (24 h by default), so receivers can switch over.
    Rotate { id: String },
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelArg {
    Webhook,
    Email,
    Sms,
    Chat,
}

impl From<ChannelArg> for v1::Channel {
    fn from(c: ChannelArg) -> Self {
        match c {
            ChannelArg::Webhook => v1::Channel::Webhook,
            ChannelArg::Email => v1::Channel::Email,
            ChannelArg::Sms => v1::Channel::Sms,
            ChannelArg::Chat => v1::Channel::Chat,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a notification (one per recipient) through the durable outbox.
    ///
    /// Prints one id per recipient. Examples:
    ///   huddle notify send --entity E --channel webhook --endpoint EP --type room.ended --data '{"room":"r1"}'
    ///   huddle notify send --entity E --channel email --to ada@example.com --subject Hi --text Hello [--html H] [--ics FILE]
    ///   huddle notify send --entity E --channel sms --to +4915112345678 --text 'Starting now'
    #[command(verbatim_doc_comment)]
    Send(Box<SendArgs>),
    /// Show a notification with every delivery attempt.
    Get { id: String },
    /// List notifications, newest first.
    List {
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: Option<String>,
        #[arg(long, value_enum)]
        channel: Option<ChannelArg>,
        /// PENDING, SENDING, DELIVERED, FAILED, DEAD, SKIPPED or CANCELLED.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Cancel a notification that has not been sent yet.
    Cancel { id: String },
    /// Opt a recipient out of (or back into) a channel.
    Prefer {
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
        #[arg(long)]
        recipient: String,
        #[arg(long, value_enum)]
        channel: ChannelArg,
        /// Opt back in instead of out.
        #[arg(long)]
        opt_in: bool,
    },
}

/// `huddle notify send` arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[arg(long = "entity", value_name = "ENTITY_ID")]
    entity_id: String,
    #[arg(long, value_enum)]
    channel: ChannelArg,
    /// Webhook endpoint ids (repeatable); none sends to every enabled
    /// endpoint of the entity that takes --type.
    #[arg(long = "endpoint", value_name = "ENDPOINT_ID")]
    endpoints: Vec<String>,
    /// Email addresses, phone numbers (E.164) or chat channels (repeatable).
    #[arg(long = "to", value_name = "RECIPIENT")]
    to: Vec<String>,
    /// The event type (webhooks: the body's `type`).
    #[arg(long = "type", value_name = "TYPE", default_value = "")]
    event_type: String,
    /// JSON data (webhooks: the body's `data`).
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// Render a template (room_invitation, room_cancelled, room_summary, or one
    /// of notify.templates_dir) with --data as its variables.
    #[arg(long, value_name = "NAME")]
    template: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    text: Option<String>,
    #[arg(long)]
    html: Option<String>,
    /// An iCalendar file to attach to an email.
    #[arg(long, value_name = "FILE")]
    ics: Option<PathBuf>,
    /// Send no earlier than this many seconds from now.
    #[arg(long, value_name = "SECONDS")]
    delay: Option<u64>,
    /// Repeating a send with the same key sends nothing new.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

fn channel_name(raw: i32) -> &'static str {
    match v1::Channel::try_from(raw) {
        Ok(v1::Channel::Webhook) => "webhook",
        Ok(v1::Channel::Email) => "email",
        Ok(v1::Channel::Sms) => "sms",
        Ok(v1::Channel::Chat) => "chat",
        _ => "unspecified",
    }
}

fn status_name(raw: i32) -> &'static str {
    v1::NotificationStatus::try_from(raw)
        .map(|s| s.as_str_name().trim_start_matches("NOTIFICATION_STATUS_"))
        .unwrap_or("UNSPECIFIED")
}

fn status_value(name: &str) -> anyhow::Result<i32> {
    let full = format!("NOTIFICATION_STATUS_{}", name.to_ascii_uppercase());
    match v1::NotificationStatus::from_str_name(&full) {
        Some(s) if s != v1::NotificationStatus::Unspecified => Ok(s as i32),
        _ => bail!("unknown status `{name}`: use PENDING, SENDING, DELIVERED, FAILED, DEAD, SKIPPED or CANCELLED"),
    }
}

fn endpoint_json(e: &v1::WebhookEndpoint) -> serde_json::Value {
    json!({
        "id": e.id,
        "entity_id": e.entity_id,
        "url": e.url,
        "event_types": e.event_types,
        "headers": e.headers,
        "secret": e.secret,
        "disabled": e.disabled,
        "disabled_reason": e.disabled_reason,
        "previous_secret_expires_at": output::json_ts(e.previous_secret_expires_at.as_ref()),
        "created_at": output::json_ts(e.created_at.as_ref()),
    })
}

fn print_endpoint(out: Out, e: &v1::WebhookEndpoint) -> anyhow::Result<()> {
    if out.is_json() {
        out.json_line(&endpoint_json(e))?;
    } else {
        let types = if e.event_types.is_empty() { "*".to_string() } else { e.event_types.join(",") };
        let state = if e.disabled { format!("disabled ({})", e.disabled_reason) } else { "enabled".into() };
        out.text(&output::fields(&[
            ("id", e.id.clone()),
            ("url", e.url.clone()),
            ("event types", types),
            ("secret", e.secret.clone()),
            ("state", state),
        ]))?;
    }
    Ok(())
}

fn notification_json(n: &v1::Notification) -> serde_json::Value {
    json!({
        "id": n.id,
        "entity_id": n.entity_id,
        "channel": channel_name(n.channel),
        "recipient": n.recipient,
        "event_type": n.event_type,
        "status": status_name(n.status),
        "due_at": output::json_ts(n.due_at.as_ref()),
        "last_error": n.last_error,
        "provider_id": n.provider_id,
        "created_at": output::json_ts(n.created_at.as_ref()),
        "attempts": n.attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "at": output::json_ts(a.at.as_ref()),
            "duration_ms": a.duration_ms,
            "response_code": a.response_code,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

fn print_notification(out: Out, n: &v1::Notification, detail: bool) -> anyhow::Result<()> {
    if out.is_json() {
        out.json_line(&notification_json(n))?;
        return Ok(());
    }
    let error = if n.last_error.is_empty() { String::new() } else { format!("  ({})", n.last_error) };
    out.text(&format!(
        "{}  {:<7}  {:<9}  {} attempt(s)  {}{error}\n",
        n.id,
        channel_name(n.channel),
        status_name(n.status),
        n.attempts.len(),
        n.recipient
    ))?;
    if detail {
        for a in &n.attempts {
            let code = if a.response_code == 0 { "-".to_string() } else { a.response_code.to_string() };
            out.text(&format!(
                "  #{} {}  {:>5} ms  {code}  {}\n",
                a.attempt,
                output::human_ts(a.at.as_ref()),
                a.duration_ms,
                a.error
            ))?;
        }
    }
    Ok(())
}

fn parse_header(h: &str) -> anyhow::Result<(String, String)> {
    match h.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => bail!("--header `{h}` must look like NAME:VALUE"),
    }
}

pub async fn run_endpoint(c: &mut Client, cmd: EndpointCommand) -> anyhow::Result<()> {
    let out = c.out;
    match cmd {
        EndpointCommand::Create { entity_id, url, event_types, headers } => {
            let headers = headers.iter().map(|h| parse_header(h)).collect::<anyhow::Result<_>>()?;
            let req = v1::CreateEndpointRequest { entity_id, url, event_types, headers };
            let e = c.notifications.create_endpoint(req).await?.into_inner();
            print_endpoint(out, &e)
        }
        EndpointCommand::List { entity_id } => {
            let r = c.notifications.list_endpoints(v1::ListEndpointsRequest { entity_id }).await?.into_inner();
            for e in &r.endpoints {
                print_endpoint(out, e)?;
                if !out.is_json() {
                    out.text("\n")?;
                }
            }
            Ok(())
        }
        EndpointCommand::Disable { id } => {
            let e = c.notifications.disable_endpoint(v1::DisableEndpointRequest { id }).await?.into_inner();
            print_endpoint(out, &e)
        }
        EndpointCommand::Rotate { id } => {
            let e = c.notifications.rotate_endpoint_secret(v1::RotateEndpointSecretRequest { id }).await?.into_inner();
            print_endpoint(out, &e)
        }
    }
}

pub async fn run_notify(c: &mut Client, cmd: NotifyCommand) -> anyhow::Result<()> {
    let out = c.out;
    match cmd {
        NotifyCommand::Send(args) => {
            let SendArgs {
                entity_id,
                channel,
                endpoints,
                to,
                event_type,
                data,
                template,
                subject,
                text,
                html,
                ics,
                delay,
                idempotency_key,
            } = *args;
            if let Some(d) = &data {
                serde_json::from_str::<serde_json::Value>(d).with_context(|| format!("--data is not JSON: {d}"))?;
            }
            let ics = match ics {
                Some(p) => Some(std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?),
                None => None,
            };
            let recipients = match channel {
                ChannelArg::Webhook => {
                    if !to.is_empty() {
                        bail!("webhooks go to endpoints: use --endpoint ID (or none for every matching endpoint)");
                    }
                    endpoints
                }
                _ => {
                    if !endpoints.is_empty() {
                        bail!("--endpoint is for webhooks; use --to for {channel:?}");
                    }
                    if to.is_empty() {
                        bail!("name at least one recipient with --to");
                    }
                    to
                }
            };
            let scheduled_for = delay.map(|s| {
                let at = std::time::SystemTime::now() + std::time::Duration::from_secs(s);
                let d = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
            });
            let req = v1::SendRequest {
                entity_id,
                channel: v1::Channel::from(channel) as i32,
                recipients,
                event_type,
                subject: subject.unwrap_or_default(),
                text: text.unwrap_or_default(),
                html: html.unwrap_or_default(),
                ics: ics.unwrap_or_default(),
                data_json: data.unwrap_or_default(),
                scheduled_for,
                idempotency_key: idempotency_key.unwrap_or_default(),
                template: template.unwrap_or_default(),
            };
            let r = c.notifications.send(req).await?.into_inner();
            if out.is_json() {
                out.json_line(&json!({"ids": r.ids, "duplicate": r.duplicate, "warnings": r.warnings}))?;
            } else {
                for id in &r.ids {
                    out.text(&format!("{id}\n"))?;
                }
                for w in &r.warnings {
                    eprintln!("warning: {w}");
                }
                if r.duplicate {
                    eprintln!("note: this idempotency key was used before; nothing new was sent");
                }
            }
            Ok(())
        }
        NotifyCommand::Get { id } => {
            let n = c.notifications.get_notification(v1::GetNotificationRequest { id }).await?.into_inner();
            print_notification(out, &n, true)
        }
        NotifyCommand::List { entity_id, channel, status, limit } => {
            let req = v1::ListNotificationsRequest {
                entity_id: entity_id.unwrap_or_default(),
                channel: channel.map_or(0, |c| v1::Channel::from(c) as i32),
                status: status.as_deref().map(status_value).transpose()?.unwrap_or(0),
                recipient: String::new(),
                page_size: limit,
                page_token: String::new(),
            };
            let r = c.notifications.list_notifications(req).await?.into_inner();
            for n in &r.notifications {
                print_notification(out, n, false)?;
            }
            Ok(())
        }
        NotifyCommand::Cancel { id } => {
            let n = c.notifications.cancel_notification(v1::CancelNotificationRequest { id }).await?.into_inner();
            print_notification(out, &n, false)
        }
        NotifyCommand::Prefer { entity_id, recipient, channel, opt_in } => {
            let req = v1::SetPreferenceRequest {
                entity_id,
                recipient,
                channel: v1::Channel::from(channel) as i32,
                opted_out: !opt_in,
            };
            let p = c.notifications.set_preference(req).await?.into_inner();
            if out.is_json() {
                out.json_line(
                    &json!({"recipient": p.recipient, "channel": channel_name(p.channel), "opted_out": p.opted_out}),
                )?;
            } else {
                let what = if p.opted_out { "opted out of" } else { "opted into" };
                out.text(&format!("{} {what} {}\n", p.recipient, channel_name(p.channel)))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_headers_parse() {
        assert_eq!(status_value("dead").unwrap(), v1::NotificationStatus::Dead as i32);
        assert!(status_value("lost").unwrap_err().to_string().contains("PENDING"));
        assert_eq!(status_name(v1::NotificationStatus::Delivered as i32), "DELIVERED");
        assert_eq!(parse_header("X-Team: blue").unwrap(), ("X-Team".into(), "blue".into()));
        assert!(parse_header("nocolon").is_err());
    }
}
