//! `huddle.v1.Knowledge`.

use huddle_core::{Document, DocumentStatus};
use huddle_proto::conversions as conv;
use huddle_proto::v1::{self, knowledge_server::Knowledge};
use huddle_storage::PageRequest;
use tonic::{Request, Response, Status, Streaming};

use super::{Services, non_empty};
use crate::api::{DocumentUpload, SearchRequest};
use crate::error::ApiError;
use crate::knowledge::SearchHit;

pub struct KnowledgeService(pub(super) Services);

type Reply<T> = Result<Response<T>, Status>;

fn status(s: DocumentStatus) -> v1::IngestStatus {
    match s {
        DocumentStatus::Processing => v1::IngestStatus::Processing,
        DocumentStatus::Completed => v1::IngestStatus::Completed,
        DocumentStatus::Failed => v1::IngestStatus::Failed,
    }
}

fn document(d: Document) -> v1::Document {
    v1::Document {
        status: status(d.status) as i32,
        id: d.id,
        entity_id: d.entity_id,
        department_id: d.department_id.unwrap_or_default(),
        filename: d.filename,
        content_type: d.content_type,
        bytes: d.bytes,
        sha256: d.sha256,
        error: d.error.unwrap_or_default(),
        chunks: d.chunks,
        created_at: Some(conv::ts(d.created_at_ms)),
        updated_at: Some(conv::ts(d.updated_at_ms)),
    }
}

fn job(d: Document) -> v1::IngestJob {
    v1::IngestJob {
        job_id: d.id.clone(),
        status: status(d.status) as i32,
        error: d.error.clone().unwrap_or_default(),
        document: Some(document(d)),
    }
}

fn hits(hits: Vec<SearchHit>) -> v1::SearchResponse {
    v1::SearchResponse {
        hits: hits
            .into_iter()
            .map(|h| v1::SearchHit {
                score: h.score,
                kind: h.item.kind.as_str().to_string(),
                text: h.item.text,
                document_id: h.item.document_id.unwrap_or_default(),
                filename: h.filename.unwrap_or_default(),
                chunk_index: h.item.chunk_index.unwrap_or_default(),
                room_id: h.item.room_id.unwrap_or_default(),
                segment_seq: h.item.segment_seq.unwrap_or_default(),
                participant_id: h.item.participant_id.unwrap_or_default(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Knowledge for KnowledgeService {
    async fn ingest_document(&self, req: Request<Streaming<v1::IngestDocumentRequest>>) -> Reply<v1::IngestJob> {
        use v1::ingest_document_request::Part;
        let api = self.0.api(&req).await?;
        let max = self.0.rt.knowledge().config().max_document_bytes;
        let mut parts = req.into_inner();
        let meta = match parts.message().await? {
            Some(v1::IngestDocumentRequest { part: Some(Part::Metadata(m)) }) => m,
            _ => {
                return Err(
                    ApiError::invalid("metadata", "the first message must carry the document's metadata").into()
                );
            }
        };
        let mut bytes = Vec::new();
        while let Some(p) = parts.message().await? {
            match p.part {
                Some(Part::Data(d)) => {
                    if bytes.len() + d.len() > max {
                        return Err(ApiError::invalid(
                            "data",
                            format!("the document is over the limit of {max} bytes"),
                        )
                        .into());
                    }
                    bytes.extend_from_slice(&d);
                }
                Some(Part::Metadata(_)) => {
                    return Err(ApiError::invalid("metadata", "only the first message may carry metadata").into());
                }
                None => {}
            }
        }
        let upload = DocumentUpload {
            entity_id: meta.entity_id,
            department_id: non_empty(meta.department_id),
            filename: meta.filename,
            content_type: meta.content_type,
        };
        Ok(Response::new(job(api.ingest_document(upload, bytes).await?)))
    }

    async fn get_ingest_job(&self, req: Request<v1::GetIngestJobRequest>) -> Reply<v1::IngestJob> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(job(api.get_ingest_job(&req.into_inner().job_id).await?)))
    }

    async fn list_documents(&self, req: Request<v1::ListDocumentsRequest>) -> Reply<v1::ListDocumentsResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let page = api.list_documents(&r.entity_id, PageRequest { size: r.page_size, token: r.page_token }).await?;
        Ok(Response::new(v1::ListDocumentsResponse {
            documents: page.items.into_iter().map(document).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn delete_document(&self, req: Request<v1::DeleteDocumentRequest>) -> Reply<v1::DeleteDocumentResponse> {
        let api = self.0.api(&req).await?;
        let removed = api.delete_document(&req.into_inner().id).await?;
        Ok(Response::new(v1::DeleteDocumentResponse { removed_chunks: removed as u32 }))
    }

    async fn search(&self, req: Request<v1::SearchRequest>) -> Reply<v1::SearchResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let search = SearchRequest {
            query: r.query,
            entity_id: r.entity_id,
            department_id: non_empty(r.department_id),
            k: r.k,
            min_score: r.min_score,
        };
        Ok(Response::new(hits(api.search(search).await?)))
    }

    async fn search_transcripts(&self, req: Request<v1::SearchTranscriptsRequest>) -> Reply<v1::SearchResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let room = non_empty(r.room_id);
        let search = SearchRequest {
            query: r.query,
            entity_id: r.entity_id,
            department_id: None,
            k: r.k,
            min_score: r.min_score,
        };
        Ok(Response::new(hits(api.search_transcripts(search, room.as_deref()).await?)))
    }
}
