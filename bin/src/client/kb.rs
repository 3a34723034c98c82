//! `huddle kb ...`: an entity's knowledge base.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use huddle_proto::v1;
use serde_json::json;

use crate::client::output::{self, Out};
use crate::client::{Client, Connection};

#[derive(Debug, Args)]
pub struct KbArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: KbCommand,
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Upload documents (text, Markdown, PDF) into an entity's knowledge base.
    ///
    /// Each file becomes an ingest job: the server extracts its text, cuts it
    /// into chunks, embeds them locally and indexes them. Prints each job;
    /// with --wait, waits until every job is COMPLETED or FAILED (exit 1 if
    /// any failed).
    Ingest {
        /// Files to upload (.txt, .md, .pdf).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The entity that owns the documents.
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
        /// A department of the entity; without one, every department sees the documents.
        #[arg(long = "department", value_name = "DEPARTMENT_ID")]
        department_id: Option<String>,
        /// Wait for the ingest jobs to finish.
        #[arg(long)]
        wait: bool,
    },
    /// Search an entity's knowledge base by meaning.
    Search {
        /// What to look for, in plain words.
        query: String,
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
        /// That department's documents and the entity-wide ones.
        #[arg(long = "department", value_name = "DEPARTMENT_ID")]
        department_id: Option<String>,
        /// Hits to return (at most 100).
        #[arg(long, default_value_t = 5, value_name = "K")]
        limit: u32,
        /// Leave out hits below this cosine similarity (-1..1).
        #[arg(long, default_value_t = 0.0, value_name = "SCORE", allow_hyphen_values = true)]
        min_score: f32,
        /// Search what was said in rooms instead of documents.
        #[arg(long)]
        transcripts: bool,
        /// With --transcripts: only this room.
        #[arg(long = "room", value_name = "ROOM_ID", requires = "transcripts")]
        room_id: Option<String>,
    },
    /// List an entity's documents with their status and chunk counts.
    List {
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
    },
    /// Show one document / ingest job.
    Get {
        /// The document's (job's) id.
        id: String,
    },
    /// Delete a document and its chunks; they stop matching at once.
    Delete {
        /// The document's id.
        id: String,
    },
}

fn status_name(raw: i32) -> &'static str {
    match v1::IngestStatus::try_from(raw) {
        Ok(v1::IngestStatus::Processing) => "PROCESSING",
        Ok(v1::IngestStatus::Completed) => "COMPLETED",
        Ok(v1::IngestStatus::Failed) => "FAILED",
        _ => "UNSPECIFIED",
    }
}

fn document_json(d: &v1::Document) -> serde_json::Value {
    json!({
        "id": d.id,
        "entity_id": d.entity_id,
        "department_id": d.department_id,
        "filename": d.filename,
        "content_type": d.content_type,
        "bytes": d.bytes,
        "sha256": d.sha256,
        "status": status_name(d.status),
        "error": d.error,
        "chunks": d.chunks,
        "created_at": output::json_ts(d.created_at.as_ref()),
        "updated_at": output::json_ts(d.updated_at.as_ref()),
    })
}

fn print_document(out: Out, d: &v1::Document) -> anyhow::Result<()> {
    if out.is_json() {
        out.json_line(&document_json(d))?;
    } else {
        let error = if d.error.is_empty() { String::new() } else { format!(" ({})", d.error) };
        out.text(&format!("{}  {:<10}  {:>4} chunks  {}{error}\n", d.id, status_name(d.status), d.chunks, d.filename))?;
    }
    Ok(())
}

pub async fn run(c: &mut Client, cmd: KbCommand) -> anyhow::Result<()> {
    let out = c.out;
    match cmd {
        KbCommand::Ingest { files, entity_id, department_id, wait } => {
            let mut jobs = Vec::new();
            for file in &files {
                let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
                let filename = file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                let meta = v1::DocumentMetadata {
                    entity_id: entity_id.clone(),
                    department_id: department_id.clone().unwrap_or_default(),
                    filename,
                    content_type: String::new(),
                };
                let mut parts =
                    vec![v1::IngestDocumentRequest { part: Some(v1::ingest_document_request::Part::Metadata(meta)) }];
                parts.extend(bytes.chunks(1 << 20).map(|b| v1::IngestDocumentRequest {
                    part: Some(v1::ingest_document_request::Part::Data(b.to_vec())),
                }));
                let job = c
                    .knowledge
                    .ingest_document(tokio_stream::iter(parts))
                    .await
                    .with_context(|| format!("cannot ingest {}", file.display()))?
                    .into_inner();
                if !wait && let Some(d) = &job.document {
                    print_document(out, d)?;
                }
                jobs.push(job.job_id);
            }
            if wait {
                let started = Instant::now();
                let mut failed = 0;
                for id in jobs {
                    let doc = loop {
                        let job = c
                            .knowledge
                            .get_ingest_job(v1::GetIngestJobRequest { job_id: id.clone() })
                            .await?
                            .into_inner();
                        if job.status != v1::IngestStatus::Processing as i32 {
                            break job.document.unwrap_or_default();
                        }
                        if started.elapsed() > Duration::from_secs(600) {
                            bail!("ingest job {id} is still processing after 10 minutes");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    };
                    if doc.status == v1::IngestStatus::Failed as i32 {
                        failed += 1;
                    }
                    print_document(out, &doc)?;
                }
                if failed > 0 {
                    bail!("{failed} document(s) failed to ingest");
                }
            }
            Ok(())
        }
        KbCommand::Search { query, entity_id, department_id, limit, min_score, transcripts, room_id } => {
            let resp = if transcripts {
                let req = v1::SearchTranscriptsRequest {
                    query,
                    entity_id,
                    room_id: room_id.unwrap_or_default(),
                    k: limit,
                    min_score,
                };
                c.knowledge.search_transcripts(req).await?.into_inner()
            } else {
                let req = v1::SearchRequest {
                    query,
                    entity_id,
                    department_id: department_id.unwrap_or_default(),
                    k: limit,
                    min_score,
                };
                c.knowledge.search(req).await?.into_inner()
            };
            for h in &resp.hits {
                if out.is_json() {
                    out.json_line(&json!({
                        "score": h.score,
                        "kind": h.kind,
                        "text": h.text,
                        "filename": h.filename,
                        "document_id": h.document_id,
                        "chunk": h.chunk_index,
                        "room_id": h.room_id,
                        "segment_seq": h.segment_seq,
                        "participant_id": h.participant_id,
                    }))?;
                } else {
                    let source = if h.filename.is_empty() {
                        format!("room {} #{}", h.room_id, h.segment_seq)
                    } else {
                        format!("{} #{}", h.filename, h.chunk_index)
                    };
                    out.text(&format!("{:.3}  {source}\n       {}\n", h.score, one_line(&h.text, 200)))?;
                }
            }
            if resp.hits.is_empty() && !out.is_json() {
                eprintln!("no matches");
            }
            Ok(())
        }
        KbCommand::List { entity_id } => {
            let mut token = String::new();
            loop {
                let req = v1::ListDocumentsRequest { entity_id: entity_id.clone(), page_size: 500, page_token: token };
                let resp = c.knowledge.list_documents(req).await?.into_inner();
                for d in &resp.documents {
                    print_document(out, d)?;
                }
                if resp.next_page_token.is_empty() {
                    return Ok(());
                }
                token = resp.next_page_token;
            }
        }
        KbCommand::Get { id } => {
            let job = c.knowledge.get_ingest_job(v1::GetIngestJobRequest { job_id: id }).await?.into_inner();
            print_document(out, &job.document.unwrap_or_default())
        }
        KbCommand::Delete { id } => {
            let r = c.knowledge.delete_document(v1::DeleteDocumentRequest { id: id.clone() }).await?.into_inner();
            if out.is_json() {
                out.json_line(&json!({ "id": id, "removed_chunks": r.removed_chunks }))?;
            } else {
                out.text(&format!("deleted {id} ({} chunks)\n", r.removed_chunks))?;
            }
            Ok(())
        }
    }
}

/// `text` on one line, cut at `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max { flat } else { format!("{}...", flat.chars().take(max).collect::<String>()) }
}
