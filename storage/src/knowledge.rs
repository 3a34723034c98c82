//! The knowledge-base part of the shared SQL layer: documents and knowledge items.

use huddle_core::{Document, DocumentStatus, ItemKind, KnowledgeItem, NewKnowledgeItem, now_ms};
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::page::{self, Cursor};
use crate::rows::{convert, corrupt, is_foreign_key_violation, not_found, placeholders, seq_to_db, to_u64};
use crate::sql::{Dialect, Sql};
use crate::{Page, PageRequest, Result, StorageError};

/// Bytes of a stored vector: little-endian f32.
pub(crate) fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn vector_from_bytes(b: &[u8]) -> Result<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return Err(corrupt("knowledge_items.vector", format!("{} bytes is not a whole number of f32", b.len())));
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DocumentRow {
    id: String,
    entity_id: String,
    department_id: Option<String>,
    filename: String,
    content_type: String,
    bytes: i64,
    sha256: String,
    status: String,
    error: Option<String>,
    chunks: i64,
    node_id: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl TryFrom<DocumentRow> for Document {
    type Error = StorageError;

    fn try_from(r: DocumentRow) -> Result<Document> {
        Ok(Document {
            status: DocumentStatus::parse(&r.status)
                .ok_or_else(|| corrupt("documents.status", format!("unknown status {:?}", r.status)))?,
            bytes: to_u64(r.bytes, "documents.bytes")?,
            chunks: u32::try_from(r.chunks).map_err(|e| corrupt("documents.chunks", e))?,
            id: r.id,
            entity_id: r.entity_id,
            department_id: r.department_id,
            filename: r.filename,
            content_type: r.content_type,
            sha256: r.sha256,
            error: r.error,
            node_id: r.node_id,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ItemRow {
    id: i64,
    entity_id: String,
    kind: String,
    department_id: Option<String>,
    document_id: Option<String>,
    chunk_index: Option<i64>,
    room_id: Option<String>,
    segment_seq: Option<i64>,
    participant_id: Option<String>,
    text: String,
    vector: Vec<u8>,
    created_at_ms: i64,
}

impl TryFrom<ItemRow> for KnowledgeItem {
    type Error = StorageError;

    fn try_from(r: ItemRow) -> Result<KnowledgeItem> {
        Ok(KnowledgeItem {
            id: to_u64(r.id, "knowledge_items.id")?,
            item: NewKnowledgeItem {
                kind: ItemKind::parse(&r.kind)
                    .ok_or_else(|| corrupt("knowledge_items.kind", format!("unknown kind {:?}", r.kind)))?,
                chunk_index: r
                    .chunk_index
                    .map(|c| u32::try_from(c).map_err(|e| corrupt("knowledge_items.chunk_index", e)))
                    .transpose()?,
                segment_seq: r.segment_seq.map(|s| to_u64(s, "knowledge_items.segment_seq")).transpose()?,
                vector: vector_from_bytes(&r.vector)?,
                entity_id: r.entity_id,
                department_id: r.department_id,
                document_id: r.document_id,
                room_id: r.room_id,
                participant_id: r.participant_id,
                text: r.text,
            },
            created_at_ms: r.created_at_ms,
        })
    }
}

const DOCUMENT_COLUMNS: &str = "id, entity_id, department_id, filename, content_type, bytes, sha256, status, error, \
                                chunks, node_id, created_at_ms, updated_at_ms";
const ITEM_COLUMNS: &str = "id, entity_id, kind, department_id, document_id, chunk_index, room_id, segment_seq, \
                            participant_id, text, vector, created_at_ms";

fn document_cursor(d: &Document) -> Cursor {
    Cursor { created_at_ms: d.created_at_ms, id: d.id.clone() }
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
    pub async fn create_document(&self, doc: Document) -> Result<Document> {
        let result = sqlx::query(&format!(
            "INSERT INTO documents ({DOCUMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&doc.id)
        .bind(&doc.entity_id)
        .bind(&doc.department_id)
        .bind(&doc.filename)
        .bind(&doc.content_type)
        .bind(seq_to_db(doc.bytes)?)
        .bind(&doc.sha256)
        .bind(doc.status.as_str())
        .bind(&doc.error)
        .bind(i64::from(doc.chunks))
        .bind(&doc.node_id)
        .bind(doc.created_at_ms)
        .bind(doc.updated_at_ms)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(doc),
            Err(e) if is_foreign_key_violation(&e) => Err(not_found(
                if doc.department_id.is_some() { "entity or department" } else { "entity" },
                &doc.entity_id,
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_document(&self, id: &str) -> Result<Document> {
        let row: Option<DocumentRow> =
            sqlx::query_as(&format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.ok_or_else(|| not_found("document", id))?.try_into()
    }

    pub async fn list_documents(&self, entity_id: &str, page: PageRequest) -> Result<Page<Document>> {
        let size = page.effective_size();
        let (after_ms, after_id) = match Cursor::from_request(&page)? {
            Some(c) => (c.created_at_ms, c.id),
            None => (i64::MIN, String::new()),
        };
        let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE entity_id = $1 AND (created_at_ms, id) > ($2, $3) \
             ORDER BY created_at_ms, id LIMIT $4"
        ))
        .bind(entity_id)
        .bind(after_ms)
        .bind(after_id)
        .bind(page::fetch_limit(size))
        .fetch_all(&self.pool)
        .await?;
        Ok(page::assemble(convert(rows)?, size, document_cursor))
    }

    /// Records the outcome of an ingest job: the document's status and (for a completed
    /// one) its items, in one transaction, provided the document is still `expected`.
    /// Returns the items' ids. A document deleted meanwhile is NotFound; one whose status
    /// changed meanwhile (failed at a node's start-up, say) is a Precondition error, and
    /// nothing is written.
    pub async fn finish_document(
        &self,
        id: &str,
        expected: DocumentStatus,
        status: DocumentStatus,
        error: Option<String>,
        items: Vec<NewKnowledgeItem>,
    ) -> Result<(Document, Vec<u64>)> {
        let mut tx = self.begin_write().await?;
        let updated: Option<String> = sqlx::query_scalar(
            "UPDATE documents SET status = $2, error = $3, chunks = $4, updated_at_ms = $5 WHERE id = $1 \
             AND status = $6 RETURNING id",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(&error)
        .bind(items.len() as i64)
        .bind(now_ms())
        .bind(expected.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if updated.is_none() {
            drop(tx);
            let now = self.get_document(id).await?;
            return Err(StorageError::Precondition(format!(
                "document `{id}` is {}, not {expected}: its ingest job was ended elsewhere (a node's start-up \
                 fails the jobs it was running); ingest the document again if needed",
                now.status
            )));
        }
        let mut ids = Vec::with_capacity(items.len());
        for item in &items {
            ids.push(Self::insert_item(&mut tx, item).await?);
        }
        tx.commit().await?;
        Ok((self.get_document(id).await?, ids))
    }

    /// Deletes a document and its items; returns the ids of the items removed.
    pub async fn delete_document(&self, id: &str) -> Result<Vec<u64>> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM knowledge_items WHERE document_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM knowledge_items WHERE document_id = $1").bind(id).execute(&mut *tx).await?;
        let deleted: Option<String> = sqlx::query_scalar("DELETE FROM documents WHERE id = $1 RETURNING id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if deleted.is_none() {
            return Err(not_found("document", id));
        }
        tx.commit().await?;
        ids.into_iter().map(|i| to_u64(i, "knowledge_items.id")).collect()
    }

    /// Marks FAILED the documents left PROCESSING by `node_id` (its jobs interrupted by
    /// its last stop), by no recorded node (from before nodes were recorded), or by any
    /// node before `stale_before_ms` (a node that never came back: no job outlives its
    /// timeout). Jobs that other nodes are running are left alone. Returns how many.
    pub async fn fail_interrupted_documents(&self, node_id: &str, stale_before_ms: i64) -> Result<u64> {
        let failed: Vec<String> = sqlx::query_scalar(
            "UPDATE documents SET status = $1, error = $2, updated_at_ms = $3 WHERE status = $4 \
             AND (node_id = $5 OR node_id IS NULL OR created_at_ms < $6) RETURNING id",
        )
        .bind(DocumentStatus::Failed.as_str())
        .bind("ingest was interrupted by a restart of its node: ingest the document again")
        .bind(now_ms())
        .bind(DocumentStatus::Processing.as_str())
        .bind(node_id)
        .bind(stale_before_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(failed.len() as u64)
    }

    pub async fn add_knowledge_items(&self, items: Vec<NewKnowledgeItem>) -> Result<Vec<u64>> {
        let _fg = self.gate.foreground();
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(items.len());
        for item in &items {
            ids.push(Self::insert_item(&mut tx, item).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub async fn get_knowledge_items(&self, ids: &[u64]) -> Result<Vec<KnowledgeItem>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT {ITEM_COLUMNS} FROM knowledge_items WHERE id IN ({})", placeholders(1, ids.len()));
        let mut q = sqlx::query_as::<DB, ItemRow>(&sql);
        for id in ids {
            q = q.bind(seq_to_db(*id)?);
        }
        convert(q.fetch_all(&self.pool).await?)
    }

    pub async fn list_knowledge_items(&self, entity_id: &str, after_id: u64, limit: u32) -> Result<Vec<KnowledgeItem>> {
        let rows: Vec<ItemRow> = sqlx::query_as(&format!(
            "SELECT {ITEM_COLUMNS} FROM knowledge_items WHERE entity_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(entity_id)
        .bind(seq_to_db(after_id)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        convert(rows)
    }

    /// How many items an entity has and the largest id: what an index snapshot must match.
    pub async fn knowledge_fingerprint(&self, entity_id: &str) -> Result<(u64, u64)> {
        let (count, max): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MAX(id) FROM knowledge_items WHERE entity_id = $1")
                .bind(entity_id)
                .fetch_one(&self.pool)
                .await?;
        Ok((to_u64(count, "count")?, to_u64(max.unwrap_or(0), "max id")?))
    }

    async fn insert_item(conn: &mut DB::Connection, item: &NewKnowledgeItem) -> Result<u64> {
        let result = sqlx::query_scalar::<DB, i64>(
            "INSERT INTO knowledge_items (entity_id, kind, department_id, document_id, chunk_index, room_id, \
             segment_seq, participant_id, text, vector, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(&item.entity_id)
        .bind(item.kind.as_str())
        .bind(&item.department_id)
        .bind(&item.document_id)
        .bind(item.chunk_index.map(i64::from))
        .bind(&item.room_id)
        .bind(item.segment_seq.map(seq_to_db).transpose()?)
        .bind(&item.participant_id)
        .bind(&item.text)
        .bind(vector_to_bytes(&item.vector))
        .bind(now_ms())
        .fetch_one(conn)
        .await;
        match result {
            Ok(id) => to_u64(id, "knowledge_items.id"),
            Err(e) if is_foreign_key_violation(&e) => Err(not_found("entity, document or room", &item.entity_id)),
            Err(e) => Err(e.into()),
        }
    }
}
