//! The notification part of the shared SQL layer: the outbox, delivery attempts,
//! idempotency keys, webhook endpoints and opt-out preferences.

use std::collections::HashMap;

use huddle_core::time::Millis;
use huddle_core::{
    Channel, DeliveryAttempt, NewNotification, Notification, NotificationContent, NotificationStatus, Preference,
    WebhookEndpoint, now_ms,
};
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::page::{self, Cursor};
use crate::rows::{
    corrupt, is_foreign_key_violation, is_unique_violation, not_found, placeholders, to_u64, value_rows,
};
use crate::sql::{Dialect, Sql};
use crate::{Page, PageRequest, Result, StorageError};

/// Rows a multi-row statement carries at most (SQLite allows 32,766 parameters a
/// statement, Postgres 65,535).
const ROWS_PER_STATEMENT: usize = 256;

/// What [`crate::NotifyStore::enqueue_notifications`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// One id per recipient, in request order.
    pub ids: Vec<String>,
    /// The idempotency key had been used before: these are the first request's ids
    /// and nothing new was enqueued.
    pub duplicate: bool,
}

/// One send request of a batch (see [`crate::NotifyStore::enqueue_notification_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueRequest {
    pub entity_id: String,
    pub idempotency_key: Option<String>,
    pub items: Vec<NewNotification>,
}

/// How a delivery attempt ended, and what happens next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered {
        provider_id: Option<String>,
    },
    /// Another attempt is due at this time.
    Retry {
        due_at_ms: Millis,
    },
    /// Refused for good.
    Failed,
    /// The last attempt of the schedule failed.
    Dead,
}

/// The outcome of one claimed notification's attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOutcome {
    pub id: String,
    pub attempt: DeliveryAttempt,
    pub next: Next,
}

/// Filters for listing notifications; every field is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationFilter {
    pub entity_id: Option<String>,
    pub channel: Option<Channel>,
    pub status: Option<NotificationStatus>,
    pub recipient: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NotificationRow {
    id: String,
    entity_id: String,
    channel: String,
    recipient: String,
    content: String,
    status: String,
    due_at_ms: i64,
    attempt_count: i64,
    last_error: Option<String>,
    provider_id: Option<String>,
    read_at_ms: Option<i64>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl NotificationRow {
    fn into_notification(self, attempts: Vec<DeliveryAttempt>) -> Result<Notification> {
        let content: NotificationContent =
            serde_json::from_str(&self.content).map_err(|e| corrupt("notifications.content", e))?;
        let attempt_count = u32::try_from(self.attempt_count).map_err(|e| corrupt("notifications.attempt_count", e))?;
        Ok(Notification {
            channel: Channel::parse(&self.channel)
                .ok_or_else(|| corrupt("notifications.channel", format!("unknown channel {:?}", self.channel)))?,
            status: NotificationStatus::parse(&self.status)
                .ok_or_else(|| corrupt("notifications.status", format!("unknown status {:?}", self.status)))?,
            id: self.id,
            entity_id: self.entity_id,
            recipient: self.recipient,
            content,
            due_at_ms: self.due_at_ms,
            attempt_count,
            attempts,
            last_error: self.last_error,
            provider_id: self.provider_id,
            read_at_ms: self.read_at_ms,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct AttemptRow {
    notification_id: String,
    attempt: i64,
    at_ms: i64,
    duration_ms: i64,
    response_code: Option<i64>,
    error: Option<String>,
}

impl TryFrom<AttemptRow> for DeliveryAttempt {
    type Error = StorageError;

    fn try_from(r: AttemptRow) -> Result<DeliveryAttempt> {
        Ok(DeliveryAttempt {
            attempt: u32::try_from(r.attempt).map_err(|e| corrupt("notification_attempts.attempt", e))?,
            at_ms: r.at_ms,
            duration_ms: to_u64(r.duration_ms, "notification_attempts.duration_ms")?,
            response_code: r
                .response_code
                .map(|c| u32::try_from(c).map_err(|e| corrupt("notification_attempts.response_code", e)))
                .transpose()?,
            error: r.error,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EndpointRow {
    id: String,
    entity_id: String,
    url: String,
    event_types: String,
    headers: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until_ms: Option<i64>,
    disabled: bool,
    disabled_reason: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = StorageError;

    fn try_from(r: EndpointRow) -> Result<WebhookEndpoint> {
        Ok(WebhookEndpoint {
            event_types: serde_json::from_str(&r.event_types)
                .map_err(|e| corrupt("webhook_endpoints.event_types", e))?,
            headers: serde_json::from_str(&r.headers).map_err(|e| corrupt("webhook_endpoints.headers", e))?,
            id: r.id,
            entity_id: r.entity_id,
            url: r.url,
            secret: r.secret,
            previous_secret: r.previous_secret,
            previous_secret_until_ms: r.previous_secret_until_ms,
            disabled: r.disabled,
            disabled_reason: r.disabled_reason,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        })
    }
}

const NOTIFICATION_COLUMNS: &str = "id, entity_id, channel, recipient, content, status, due_at_ms, attempt_count, \
                                    last_error, provider_id, read_at_ms, created_at_ms, updated_at_ms";
const ENDPOINT_COLUMNS: &str = "id, entity_id, url, event_types, headers, secret, previous_secret, \
                                previous_secret_until_ms, disabled, disabled_reason, created_at_ms, updated_at_ms";

fn json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StorageError::Database(sqlx::Error::Encode(format!("{what}: {e}").into())))
}

impl<DB> Sql<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<bool>: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Writes a send request's notifications, all or none. A recipient who opted out
    /// of the channel gets a SKIPPED row. With an idempotency key that was used
    /// before, writes nothing and returns the first request's ids.
    pub async fn enqueue_notifications(
        &self,
        entity_id: &str,
        idempotency_key: Option<&str>,
        items: Vec<NewNotification>,
    ) -> Result<Enqueued> {
        let request = EnqueueRequest {
            entity_id: entity_id.to_string(),
            idempotency_key: idempotency_key.map(str::to_string),
            items,
        };
        let mut done = self.enqueue_notification_batch(vec![request]).await?;
        Ok(done.remove(0))
    }

    /// Several send requests with one commit (one sync): all are written or, on any
    /// error, none. Without idempotency keys, and when the rows fit in one
    /// statement, that statement is the whole write: no transaction to open and
    /// close, which is two round trips fewer to SQLite's writer for every sender
    /// waiting behind it.
    pub async fn enqueue_notification_batch(&self, requests: Vec<EnqueueRequest>) -> Result<Vec<Enqueued>> {
        let _fg = self.gate.foreground();
        let fresh = |r: EnqueueRequest| Enqueued { ids: r.items.into_iter().map(|n| n.id).collect(), duplicate: false };
        let rows: usize = requests.iter().map(|r| r.items.len()).sum();
        if rows <= ROWS_PER_STATEMENT && requests.iter().all(|r| r.idempotency_key.is_none()) {
            let items: Vec<(&str, &NewNotification)> =
                requests.iter().flat_map(|r| r.items.iter().map(|n| (r.entity_id.as_str(), n))).collect();
            let mut conn = self.writer.acquire().await?;
            Self::insert_items(&mut conn, &items).await?;
            drop(conn);
            return Ok(requests.into_iter().map(fresh).collect());
        }
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(requests.len());
        let mut new_rows = Vec::with_capacity(requests.len());
        for r in &requests {
            match Self::claim_key(&mut tx, &r.entity_id, r.idempotency_key.as_deref(), &r.items).await? {
                Some(ids) => out.push(Some(Enqueued { ids, duplicate: true })),
                None => {
                    out.push(None);
                    new_rows.extend(r.items.iter().map(|n| (r.entity_id.as_str(), n)));
                }
            }
        }
        Self::insert_items(&mut tx, &new_rows).await?;
        tx.commit().await?;
        Ok(requests.into_iter().zip(out).map(|(r, done)| done.unwrap_or_else(|| fresh(r))).collect())
    }

    /// Records a request's idempotency key with its ids; if the key was used before,
    /// returns the first request's ids instead.
    async fn claim_key(
        tx: &mut DB::Connection,
        entity_id: &str,
        idempotency_key: Option<&str>,
        items: &[NewNotification],
    ) -> Result<Option<Vec<String>>> {
        let now = now_ms();
        if let Some(key) = idempotency_key {
            let ids: Vec<String> = items.iter().map(|n| n.id.clone()).collect();
            let inserted: std::result::Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                "INSERT INTO notification_requests (entity_id, idempotency_key, ids, created_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (entity_id, idempotency_key) DO NOTHING RETURNING entity_id",
            )
            .bind(entity_id)
            .bind(key)
            .bind(json(&ids, "notification ids")?)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await;
            match inserted {
                Ok(None) => {
                    let stored: String = sqlx::query_scalar(
                        "SELECT ids FROM notification_requests WHERE entity_id = $1 AND idempotency_key = $2",
                    )
                    .bind(entity_id)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                    let ids = serde_json::from_str(&stored).map_err(|e| corrupt("notification_requests.ids", e))?;
                    return Ok(Some(ids));
                }
                Ok(_) => {}
                Err(e) if is_foreign_key_violation(&e) => return Err(not_found("entity", entity_id)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Inserts notifications, `(entity, notification)`, in one statement per
    /// `ROWS_PER_STATEMENT`. A recipient who opted out of the channel gets a SKIPPED
    /// row: the statement itself looks the preference up.
    async fn insert_items(conn: &mut DB::Connection, items: &[(&str, &NewNotification)]) -> Result<()> {
        let now = now_ms();
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            // typed columns: a VALUES list gives Postgres no other hint
            let sql = format!(
                "WITH v (id, entity_id, channel, recipient, content, status, due_at_ms, last_error) AS (VALUES {}) \
                 INSERT INTO notifications ({NOTIFICATION_COLUMNS}) \
                 SELECT v.id, v.entity_id, v.channel, v.recipient, v.content, \
                 CASE WHEN p.opted_out THEN '{skipped}' ELSE v.status END, v.due_at_ms, 0, \
                 CASE WHEN p.opted_out THEN v.recipient || ' opted out of ' || v.channel ELSE v.last_error END, \
                 NULL, NULL, $1, $1 \
                 FROM v LEFT JOIN notification_preferences p \
                 ON p.entity_id = v.entity_id AND p.recipient = v.recipient AND p.channel = v.channel",
                value_rows(2, chunk.len(), &["TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "BIGINT", "TEXT"]),
                skipped = NotificationStatus::Skipped.as_str(),
            );
            let mut q = sqlx::query(&sql).bind(now);
            for (entity_id, n) in chunk {
                q = q
                    .bind(&n.id)
                    .bind(*entity_id)
                    .bind(n.channel.as_str())
                    .bind(&n.recipient)
                    .bind(json(&n.content, "notification content")?)
                    .bind(n.status.as_str())
                    .bind(n.due_at_ms)
                    .bind(&n.last_error);
            }
            match q.execute(&mut *conn).await {
                Ok(_) => {}
                Err(e) if is_foreign_key_violation(&e) => {
                    // the statement does not say which; name every entity it wrote for
                    let mut entities: Vec<&str> = chunk.iter().map(|(e, _)| *e).collect();
                    entities.sort_unstable();
                    entities.dedup();
                    return Err(not_found("entity", &entities.join(" or ")));
                }
                Err(e) if is_unique_violation(&e) => {
                    return Err(StorageError::AlreadyExists { what: "notification", value: chunk[0].1.id.clone() });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub async fn get_notification(&self, id: &str) -> Result<Notification> {
        let row: Option<NotificationRow> =
            sqlx::query_as(&format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let row = row.ok_or_else(|| not_found("notification", id))?;
        let mut attempts = self.attempts_of(std::slice::from_ref(&row.id)).await?;
        row.into_notification(attempts.remove(id).unwrap_or_default())
    }

    async fn attempts_of(&self, ids: &[String]) -> Result<HashMap<String, Vec<DeliveryAttempt>>> {
        let mut out: HashMap<String, Vec<DeliveryAttempt>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT notification_id, attempt, at_ms, duration_ms, response_code, error FROM notification_attempts \
             WHERE notification_id IN ({}) ORDER BY notification_id, attempt",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query_as::<DB, AttemptRow>(&sql);
        for id in ids {
            q = q.bind(id);
        }
        for row in q.fetch_all(&self.pool).await? {
            let id = row.notification_id.clone();
            out.entry(id).or_default().push(row.try_into()?);
        }
        Ok(out)
    }

    async fn with_attempts(&self, rows: Vec<NotificationRow>) -> Result<Vec<Notification>> {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut attempts = self.attempts_of(&ids).await?;
        rows.into_iter()
            .map(|r| {
                let a = attempts.remove(&r.id).unwrap_or_default();
                r.into_notification(a)
            })
            .collect()
    }

    /// Newest first.
    pub async fn list_notifications(
        &self,
        filter: NotificationFilter,
        page: PageRequest,
    ) -> Result<Page<Notification>> {
        let size = page.effective_size();
        let cursor = Cursor::from_request(&page)?;
        let mut clauses = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut push = |clause: &str, value: String| {
            args.push(value);
            clauses.push(clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(e) = filter.entity_id {
            push("entity_id = ?", e);
        }
        if let Some(c) = filter.channel {
            push("channel = ?", c.as_str().to_string());
        }
        if let Some(s) = filter.status {
            push("status = ?", s.as_str().to_string());
        }
        if let Some(r) = filter.recipient {
            push("recipient = ?", r);
        }
        let n = args.len();
        if cursor.is_some() {
            clauses.push(format!("(created_at_ms, id) < (${}, ${})", n + 1, n + 2));
        }
        let where_ = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let limit_at = n + if cursor.is_some() { 3 } else { 1 };
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications {where_} \
             ORDER BY created_at_ms DESC, id DESC LIMIT ${limit_at}"
        );
        let mut q = sqlx::query_as::<DB, NotificationRow>(&sql);
        for a in args {
            q = q.bind(a);
        }
        if let Some(c) = cursor {
            q = q.bind(c.created_at_ms).bind(c.id);
        }
        let rows = q.bind(page::fetch_limit(size)).fetch_all(&self.pool).await?;
        let items = self.with_attempts(rows).await?;
        Ok(page::assemble(items, size, |n: &Notification| Cursor { created_at_ms: n.created_at_ms, id: n.id.clone() }))
    }

    /// Cancels a PENDING notification; `Precondition` once it is being sent or done.
    pub async fn cancel_notification(&self, id: &str) -> Result<Notification> {
        let updated: Option<String> = sqlx::query_scalar(
            "UPDATE notifications SET status = $2, updated_at_ms = $3 WHERE id = $1 AND status = $4 RETURNING id",
        )
        .bind(id)
        .bind(NotificationStatus::Cancelled.as_str())
        .bind(now_ms())
        .bind(NotificationStatus::Pending.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let n = self.get_notification(id).await?;
        if updated.is_none() {
            return Err(StorageError::Precondition(format!(
                "notification `{id}` is {}: only PENDING notifications can be cancelled",
                n.status
            )));
        }
        Ok(n)
    }

    /// Claims up to `limit` due notifications of `channels` for `node`: PENDING ones
    /// whose time has come and SENDING ones whose claim lapsed, except those to
    /// `skip_recipients`. They become SENDING, claimed until `now + lease_ms`.
    /// Oldest due first.
    pub async fn claim_notifications(
        &self,
        node: &str,
        channels: &[Channel],
        skip_recipients: &[String],
        now: Millis,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        if channels.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let channel_list = placeholders(6, channels.len());
        let skip = match skip_recipients.len() {
            0 => String::new(),
            n => format!(" AND recipient NOT IN ({})", placeholders(6 + channels.len(), n)),
        };
        let sql = format!(
            "UPDATE notifications SET status = $1, claimed_by = $2, due_at_ms = $3, updated_at_ms = $4 \
             WHERE id IN (SELECT id FROM notifications WHERE status IN ('PENDING', 'SENDING') AND due_at_ms <= $4 \
             AND channel IN ({channel_list}){skip} ORDER BY due_at_ms LIMIT $5{lock}) \
             AND status IN ('PENDING', 'SENDING') RETURNING {NOTIFICATION_COLUMNS}",
            lock = DB::SKIP_LOCKED
        );
        // one statement, atomic by itself: no transaction around it
        let mut conn = self.writer.acquire().await?;
        let mut q = sqlx::query_as::<DB, NotificationRow>(&sql)
            .bind(NotificationStatus::Sending.as_str())
            .bind(node)
            .bind(now + lease_ms)
            .bind(now)
            .bind(i64::from(limit));
        for c in channels {
            q = q.bind(c.as_str());
        }
        for r in skip_recipients {
            q = q.bind(r);
        }
        let mut rows = q.fetch_all(&mut *conn).await?;
        drop(conn);
        rows.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        rows.into_iter().map(|r| r.into_notification(Vec::new())).collect()
    }

    /// Records attempts and their consequences, all in one transaction. An outcome for
    /// a notification that is no longer SENDING (cancelled meanwhile, or recorded by
    /// another node) still records its attempt but leaves the status alone.
    pub async fn record_deliveries(&self, outcomes: &[DeliveryOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        // The first outcome of a notification sets its status, as recording them one
        // by one would: a later one finds it no longer SENDING.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&DeliveryOutcome> = outcomes.iter().filter(|o| seen.insert(o.id.as_str())).collect();
        let mut tx = self.begin_write().await?;
        for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO notification_attempts (notification_id, attempt, at_ms, duration_ms, response_code, error) \
                 VALUES {} ON CONFLICT (notification_id, attempt) DO NOTHING",
                value_rows(1, chunk.len(), &["", "", "", "", "", ""])
            );
            let mut q = sqlx::query(&sql);
            for o in chunk {
                q = q
                    .bind(&o.id)
                    .bind(i64::from(o.attempt.attempt))
                    .bind(o.attempt.at_ms)
                    .bind(o.attempt.duration_ms.min(i64::MAX as u64) as i64)
                    .bind(o.attempt.response_code.map(i64::from))
                    .bind(&o.attempt.error);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in firsts.chunks(ROWS_PER_STATEMENT) {
            // typed columns: a VALUES list gives Postgres no other hint
            let sql = format!(
                "WITH v (id, status, due_at_ms, attempt, last_error, provider_id) AS (VALUES {}) \
                 UPDATE notifications SET status = v.status, \
                 due_at_ms = COALESCE(v.due_at_ms, notifications.due_at_ms), \
                 attempt_count = CASE WHEN notifications.attempt_count < v.attempt THEN v.attempt \
                 ELSE notifications.attempt_count END, \
                 last_error = v.last_error, provider_id = COALESCE(v.provider_id, notifications.provider_id), \
                 claimed_by = NULL, updated_at_ms = $1 \
                 FROM v WHERE notifications.id = v.id AND notifications.status = 'SENDING'",
                value_rows(2, chunk.len(), &["TEXT", "TEXT", "BIGINT", "BIGINT", "TEXT", "TEXT"])
            );
            let mut q = sqlx::query(&sql).bind(now);
            for o in chunk {
                let (status, due, provider_id) = match &o.next {
                    Next::Delivered { provider_id } => (NotificationStatus::Delivered, None, provider_id.clone()),
                    Next::Retry { due_at_ms } => (NotificationStatus::Pending, Some(*due_at_ms), None),
                    Next::Failed => (NotificationStatus::Failed, None, None),
                    Next::Dead => (NotificationStatus::Dead, None, None),
                };
                q = q
                    .bind(&o.id)
                    .bind(status.as_str())
                    .bind(due)
                    .bind(i64::from(o.attempt.attempt))
                    .bind(&o.attempt.error)
                    .bind(provider_id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes the notifications `node` had claimed due again at once (a restarted node
    /// takes back its own work without waiting for the claims to lapse).
    pub async fn release_claims(&self, node: &str) -> Result<u64> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE notifications SET status = 'PENDING', claimed_by = NULL, due_at_ms = $2 \
             WHERE status = 'SENDING' AND claimed_by = $1 RETURNING id",
        )
        .bind(node)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.len() as u64)
    }

    /// Hands claims of `node` back without an attempt: the notifications are due
    /// again at once, for any node. Returns how many were still claimed.
    pub async fn release_notifications(&self, node: &str, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut released = 0;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE notifications SET status = 'PENDING', claimed_by = NULL, due_at_ms = $2 \
                 WHERE status = 'SENDING' AND claimed_by = $1 AND id IN ({}) RETURNING id",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query_scalar::<DB, String>(&sql).bind(node).bind(now_ms());
            for id in chunk {
                q = q.bind(id);
            }
            released += q.fetch_all(&self.pool).await?.len() as u64;
        }
        Ok(released)
    }

    /// Sets the final status of a notification from a provider's callback (an SMS
    /// status report), found by the provider's id.
    pub async fn update_by_provider_id(
        &self,
        provider_id: &str,
        status: NotificationStatus,
        error: Option<String>,
    ) -> Result<Notification> {
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE notifications SET status = $2, last_error = COALESCE($3, last_error), updated_at_ms = $4 \
             WHERE provider_id = $1 RETURNING id",
        )
        .bind(provider_id)
        .bind(status.as_str())
        .bind(error)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let id = id.ok_or_else(|| not_found("notification with provider id", provider_id))?;
        self.get_notification(&id).await
    }

    /// Chat notifications to `channel` created after the cursor `(after_ms, after_id)`,
    /// oldest first: what a subscriber has not seen yet.
    pub async fn list_chat_messages(
        &self,
        channel: &str,
        after: Option<(Millis, String)>,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, String::new()));
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE channel = 'chat' AND recipient = $1 \
             AND status NOT IN ('CANCELLED', 'SKIPPED') AND (created_at_ms, id) > ($2, $3) \
             ORDER BY created_at_ms, id LIMIT $4"
        ))
        .bind(channel)
        .bind(after_ms)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        self.with_attempts(rows).await
    }

    /// Chat messages handed to a live subscriber: PENDING ones become DELIVERED,
    /// with the hand-over recorded as an attempt.
    pub async fn mark_chat_delivered(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for id in ids {
            let updated: Option<String> = sqlx::query_scalar(
                "UPDATE notifications SET status = 'DELIVERED', attempt_count = attempt_count + 1, updated_at_ms = $2 \
                 WHERE id = $1 AND channel = 'chat' AND status = 'PENDING' RETURNING id",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if updated.is_some() {
                sqlx::query(
                    "INSERT INTO notification_attempts (notification_id, attempt, at_ms, duration_ms, response_code, \
                     error) VALUES ($1, 1, $2, 0, NULL, NULL) ON CONFLICT (notification_id, attempt) DO NOTHING",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a chat read receipt (the first one counts).
    pub async fn mark_read(&self, id: &str) -> Result<Notification> {
        let updated: Option<String> = sqlx::query_scalar(
            "UPDATE notifications SET read_at_ms = COALESCE(read_at_ms, $2), updated_at_ms = $2 \
             WHERE id = $1 AND channel = 'chat' RETURNING id",
        )
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        updated.ok_or_else(|| not_found("chat message", id))?;
        self.get_notification(id).await
    }

    /// How many notifications are in each status (for metrics and benchmarks).
    pub async fn notification_counts(&self, entity_id: Option<&str>) -> Result<Vec<(NotificationStatus, u64)>> {
        let rows: Vec<(String, i64)> = match entity_id {
            Some(e) => {
                sqlx::query_as("SELECT status, COUNT(*) FROM notifications WHERE entity_id = $1 GROUP BY status")
                    .bind(e)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as("SELECT status, COUNT(*) FROM notifications GROUP BY status")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.into_iter()
            .map(|(s, c)| {
                let status = NotificationStatus::parse(&s)
                    .ok_or_else(|| corrupt("notifications.status", format!("unknown status {s:?}")))?;
                Ok((status, to_u64(c, "count")?))
            })
            .collect()
    }

    pub async fn create_endpoint(&self, ep: WebhookEndpoint) -> Result<WebhookEndpoint> {
        let result = sqlx::query(&format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&ep.id)
        .bind(&ep.entity_id)
        .bind(&ep.url)
        .bind(json(&ep.event_types, "event types")?)
        .bind(json(&ep.headers, "headers")?)
        .bind(&ep.secret)
        .bind(&ep.previous_secret)
        .bind(ep.previous_secret_until_ms)
        .bind(ep.disabled)
        .bind(&ep.disabled_reason)
        .bind(ep.created_at_ms)
        .bind(ep.updated_at_ms)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(ep),
            Err(e) if is_foreign_key_violation(&e) => Err(not_found("entity", &ep.entity_id)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_endpoint(&self, id: &str) -> Result<WebhookEndpoint> {
        let row: Option<EndpointRow> =
            sqlx::query_as(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.ok_or_else(|| not_found("webhook endpoint", id))?.try_into()
    }

    /// Oldest first.
    pub async fn list_endpoints(&self, entity_id: &str) -> Result<Vec<WebhookEndpoint>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE entity_id = $1 ORDER BY created_at_ms, id"
        ))
        .bind(entity_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<WebhookEndpoint> {
        let r: Option<String> = sqlx::query_scalar(
            "UPDATE webhook_endpoints SET disabled = $2, disabled_reason = $3, updated_at_ms = $4 WHERE id = $1 \
             RETURNING id",
        )
        .bind(id)
        .bind(true)
        .bind(reason)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        if r.is_none() {
            return Err(not_found("webhook endpoint", id));
        }
        self.get_endpoint(id).await
    }

    /// Makes `secret` the endpoint's secret; the old one keeps signing until `overlap_until_ms`.
    pub async fn rotate_endpoint_secret(
        &self,
        id: &str,
        secret: &str,
        overlap_until_ms: Millis,
    ) -> Result<WebhookEndpoint> {
        let r: Option<String> = sqlx::query_scalar(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until_ms = $3, secret = $2, \
             updated_at_ms = $4 WHERE id = $1 RETURNING id",
        )
        .bind(id)
        .bind(secret)
        .bind(overlap_until_ms)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        if r.is_none() {
            return Err(not_found("webhook endpoint", id));
        }
        self.get_endpoint(id).await
    }

    /// Rooms with events after their routing cursor, with that cursor (0 when the
    /// room was never routed): every open room, and those that ended at or after
    /// `ended_since_ms`. Oldest room first.
    pub async fn list_unrouted_rooms(&self, ended_since_ms: Millis) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.id, COALESCE(c.routed_seq, 0) FROM rooms r LEFT JOIN room_routing c ON c.room_id = r.id \
             WHERE r.event_seq > COALESCE(c.routed_seq, 0) AND (r.ended_at_ms IS NULL OR r.ended_at_ms >= $1) \
             ORDER BY r.created_at_ms, r.id",
        )
        .bind(ended_since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, seq)| (id, seq.max(0) as u64)).collect())
    }

    /// Moves rooms' routing cursors forward (never back): `(room_id, seq)` pairs,
    /// in one transaction.
    pub async fn advance_routed_seqs(&self, cursors: &[(String, u64)]) -> Result<()> {
        if cursors.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (room_id, seq) in cursors {
            let seq = i64::try_from(*seq).map_err(|_| StorageError::Corrupt {
                column: "room_routing.routed_seq",
                message: format!("{seq} is out of range"),
            })?;
            let result = sqlx::query(
                "INSERT INTO room_routing (room_id, routed_seq) VALUES ($1, $2) ON CONFLICT (room_id) \
                 DO UPDATE SET routed_seq = CASE WHEN excluded.routed_seq > room_routing.routed_seq \
                 THEN excluded.routed_seq ELSE room_routing.routed_seq END",
            )
            .bind(room_id.as_str())
            .bind(seq)
            .execute(&mut *tx)
            .await;
            match result {
                Ok(_) => {}
                Err(e) if is_foreign_key_violation(&e) => return Err(not_found("room", room_id)),
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_preference(&self, p: Preference) -> Result<Preference> {
        let result = sqlx::query(
            "INSERT INTO notification_preferences (entity_id, recipient, channel, opted_out, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (entity_id, recipient, channel) \
             DO UPDATE SET opted_out = excluded.opted_out, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&p.entity_id)
        .bind(&p.recipient)
        .bind(p.channel.as_str())
        .bind(p.opted_out)
        .bind(p.updated_at_ms)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(p),
            Err(e) if is_foreign_key_violation(&e) => Err(not_found("entity", &p.entity_id)),
            Err(e) => Err(e.into()),
        }
    }
}
