//! The knowledge base: documents, and the indexed items (document chunks and transcript
//! segments) that search runs over.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// Where an ingested document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DocumentStatus {
    /// Accepted; being extracted, chunked, embedded and indexed.
    Processing,
    /// Searchable.
    Completed,
    /// Not searchable; `Document::error` says why.
    Failed,
}

impl DocumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Processing => "PROCESSING",
            DocumentStatus::Completed => "COMPLETED",
            DocumentStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<DocumentStatus> {
        match s {
            "PROCESSING" => Some(DocumentStatus::Processing),
            "COMPLETED" => Some(DocumentStatus::Completed),
            "FAILED" => Some(DocumentStatus::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for DocumentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A knowledge-base document of an entity (optionally of one department). Its id is
/// also the id of its ingest job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub entity_id: String,
    pub department_id: Option<String>,
    pub filename: String,
    pub content_type: String,
    /// Size of the uploaded file.
    pub bytes: u64,
    /// SHA-256 of the uploaded file, hex.
    pub sha256: String,
    pub status: DocumentStatus,
    pub error: Option<String>,
    /// Chunks indexed (0 until completed).
    pub chunks: u32,
    /// The node that runs (or ran) the ingest job; at start-up a node fails only its
    /// own interrupted jobs. `None` for documents from before nodes were recorded.
    #[serde(default)]
    pub node_id: Option<String>,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
}

/// What an indexed item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemKind {
    DocumentChunk,
    TranscriptSegment,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::DocumentChunk => "document_chunk",
            ItemKind::TranscriptSegment => "transcript_segment",
        }
    }

    pub fn parse(s: &str) -> Option<ItemKind> {
        match s {
            "document_chunk" => Some(ItemKind::DocumentChunk),
            "transcript_segment" => Some(ItemKind::TranscriptSegment),
            _ => None,
        }
    }
}

/// An item to index: its text, its embedding and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKnowledgeItem {
    pub entity_id: String,
    pub kind: ItemKind,
    pub department_id: Option<String>,
    pub document_id: Option<String>,
    pub chunk_index: Option<u32>,
    pub room_id: Option<String>,
    pub segment_seq: Option<u64>,
    pub participant_id: Option<String>,
    pub text: String,
    /// L2-normalised embedding.
    pub vector: Vec<f32>,
}

/// A stored item; `id` is its id in the entity's vector index.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeItem {
    pub id: u64,
    pub item: NewKnowledgeItem,
    pub created_at_ms: Millis,
}
