//! The runtime's knowledge service: the embedding model and its batching actor (loaded
//! on first use, fetched then if allowed), one `KnowledgeActor` per entity, document
//! ingest jobs, search, and the live suggestions made from transcript segments.
//!
//! Ingest jobs are bounded: at most `max_jobs_per_node` run at once on a node and
//! `max_jobs_per_entity` per entity; more wait their turn (at most `max_queued_jobs`
//! wait, beyond which uploads are refused), and a job not finished `job_timeout_ms`
//! after it was accepted is FAILED with the reason. Each job records this node's id,
//! so that at start-up a node fails only the jobs it was running.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use huddle_actors::embedder::{EmbedderActor, EmbedderArgs, EmbedderMsg};
use huddle_actors::knowledge::{
    KnowledgeActor, KnowledgeArgs, KnowledgeMsg, Query, find_knowledge, knowledge_actor_name, meta_of,
};
use huddle_actors::room::{SegmentListener, Suggestion};
use huddle_actors::room_supervisor::find_room;
use huddle_core::{Document, DocumentStatus, ItemKind, NewKnowledgeItem, Room, TranscriptSegment};
use huddle_models::chunk::{ChunkConfig, chunk_text};
use huddle_models::embed::{EMBEDDING_DIM, Embedder};
use huddle_models::extract::{DocumentFormat, ExtractLimits, extract_text_within};
use huddle_models::fetch;
use huddle_models::index::{self, Hit, SearchFilter};
use huddle_storage::DynStore;
use ractor::{Actor, ActorRef};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::config::KnowledgeConfig;
use crate::error::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

pub(crate) struct Knowledge {
    config: KnowledgeConfig,
    namespace: String,
    /// This node's name, recorded on the ingest jobs it runs.
    node_id: String,
    store: DynStore,
    model: OnceCell<Arc<Embedder>>,
    embedder: Mutex<Option<ActorRef<EmbedderMsg>>>,
    /// Knowledge actors spawned by this runtime, to stop (and snapshot) at shutdown.
    actors: Mutex<HashMap<String, ActorRef<KnowledgeMsg>>>,
    jobs: Arc<Jobs>,
}

/// This node's ingest jobs: the slots they take turns on, and counters.
struct Jobs {
    node: Arc<Semaphore>,
    per_entity: usize,
    max_waiting: usize,
    state: Mutex<JobsState>,
}

#[derive(Default)]
struct JobsState {
    /// Each entity with jobs on this node: its slots and how many jobs hold a ticket.
    entities: HashMap<String, (Arc<Semaphore>, usize)>,
    stats: IngestStats,
}

/// This node's ingest jobs at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Jobs extracting, chunking or embedding now.
    pub running: usize,
    /// Accepted jobs waiting for a slot.
    pub waiting: usize,
    /// The most jobs that ran at once since the node started.
    pub peak_running: usize,
    /// The most jobs of one entity that ran at once since the node started.
    pub peak_running_per_entity: usize,
}

/// An accepted job's place on the node: counted as waiting, then as running.
struct Ticket {
    jobs: Arc<Jobs>,
    entity_id: String,
    running: bool,
}

/// The slots a running job holds (given back when the job, or its blocking extraction
/// if that outlives a timeout, ends).
struct Slots {
    _entity: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
}

impl Jobs {
    fn new(config: &KnowledgeConfig) -> Self {
        Jobs {
            node: Arc::new(Semaphore::new(config.max_jobs_per_node.max(1))),
            per_entity: config.max_jobs_per_entity.max(1),
            max_waiting: config.max_queued_jobs,
            state: Mutex::new(JobsState::default()),
        }
    }

    /// A ticket for a new job, unless too many are waiting already.
    fn ticket(self: &Arc<Self>, entity_id: &str) -> Result<Ticket> {
        let mut state = self.state.lock().unwrap();
        if state.stats.waiting >= self.max_waiting {
            return Err(ApiError::ResourceExhausted(format!(
                "this node already has {} ingest jobs waiting (knowledge.max_queued_jobs): upload again when some \
                 have finished",
                state.stats.waiting
            )));
        }
        state.stats.waiting += 1;
        let per_entity = self.per_entity;
        state.entities.entry(entity_id.to_string()).or_insert_with(|| (Arc::new(Semaphore::new(per_entity)), 0)).1 += 1;
        Ok(Ticket { jobs: self.clone(), entity_id: entity_id.to_string(), running: false })
    }

    fn stats(&self) -> IngestStats {
        self.state.lock().unwrap().stats
    }
}

impl Ticket {
    /// Waits for a slot of the entity, then one of the node (in that order, so that a
    /// node slot never waits on an entity).
    async fn slots(&mut self) -> Slots {
        let entity = self.jobs.state.lock().unwrap().entities[&self.entity_id].0.clone();
        let entity = entity.acquire_owned().await.expect("job slots are never closed");
        let node = self.jobs.node.clone().acquire_owned().await.expect("job slots are never closed");
        let mut state = self.jobs.state.lock().unwrap();
        let stats = &mut state.stats;
        stats.waiting -= 1;
        stats.running += 1;
        stats.peak_running = stats.peak_running.max(stats.running);
        let of_entity = self.jobs.per_entity - state.entities[&self.entity_id].0.available_permits();
        state.stats.peak_running_per_entity = state.stats.peak_running_per_entity.max(of_entity);
        self.running = true;
        Slots { _entity: entity, _node: node }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.jobs.state.lock().unwrap();
        if self.running {
            state.stats.running -= 1;
        } else {
            state.stats.waiting -= 1;
        }
        if let Some(e) = state.entities.get_mut(&self.entity_id) {
            e.1 -= 1;
            if e.1 == 0 {
                state.entities.remove(&self.entity_id);
            }
        }
    }
}

/// A search hit with its item's text and origin.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub score: f32,
    pub item_id: u64,
    pub item: NewKnowledgeItem,
    /// The document's filename, for document chunks.
    pub filename: Option<String>,
}

impl Knowledge {
    pub fn new(config: KnowledgeConfig, namespace: String, node_id: String, store: DynStore) -> Self {
        Knowledge {
            jobs: Arc::new(Jobs::new(&config)),
            config,
            namespace,
            node_id,
            store,
            model: OnceCell::new(),
            embedder: Mutex::new(None),
            actors: Mutex::new(HashMap::new()),
        }
    }

    /// This node's ingest jobs at a glance.
    pub fn ingest_stats(&self) -> IngestStats {
        self.jobs.stats()
    }

    pub fn config(&self) -> &KnowledgeConfig {
        &self.config
    }

    fn unavailable(m: impl std::fmt::Display) -> ApiError {
        ApiError::Unavailable(format!("knowledge base unavailable: {m}"))
    }

    /// The embedding model, loading (and fetching, if allowed) it the first time.
    pub async fn model(&self) -> Result<Arc<Embedder>> {
        if !self.config.enabled {
            return Err(ApiError::FailedPrecondition("the knowledge base is disabled on this node".into()));
        }
        let config = self.config.clone();
        self.model
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || -> Result<Arc<Embedder>> {
                    let dir = match &config.models_dir {
                        Some(d) => d.clone(),
                        None => fetch::default_models_dir().map_err(Self::unavailable)?,
                    };
                    let model_dir = fetch::embedder_dir(&dir);
                    if !model_dir.exists() {
                        if !config.fetch_missing {
                            return Err(Self::unavailable(format!(
                                "embedding model not found in {}: run `huddle models fetch`",
                                model_dir.display()
                            )));
                        }
                        info!(dir = %dir.display(), "embedding model not installed; fetching it");
                        fetch::fetch_embedder(&dir, &|p| tracing::info!(progress = ?p, "fetching embedding model"))
                            .map_err(Self::unavailable)?;
                    }
                    let model = Embedder::load(&model_dir).map_err(Self::unavailable)?;
                    info!(dir = %model_dir.display(), "embedding model ready");
                    Ok(Arc::new(model))
                })
                .await
                .map_err(|e| ApiError::Internal(format!("model loading panicked: {e}")))?
            })
            .await
            .cloned()
    }

    async fn embedder(&self) -> Result<ActorRef<EmbedderMsg>> {
        let model = self.model().await?;
        if let Some(a) =
            self.embedder.lock().unwrap().clone().filter(|a| a.get_status() == ractor::ActorStatus::Running)
        {
            return Ok(a);
        }
        let args = EmbedderArgs {
            model,
            max_batch: self.config.embed_max_batch,
            max_wait: Duration::from_millis(self.config.embed_max_wait_ms),
        };
        let (actor, _) = Actor::spawn(None, EmbedderActor, args)
            .await
            .map_err(|e| Self::unavailable(format!("embedder failed to start: {e}")))?;
        *self.embedder.lock().unwrap() = Some(actor.clone());
        Ok(actor)
    }

    /// Embeddings of `texts`, batched with everyone else's.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let embedder = self.embedder().await?;
        match ractor::call_t!(embedder, |reply| EmbedderMsg::Embed { texts, reply }, 60_000) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ApiError::Internal(format!("embedding failed: {e}"))),
            Err(e) => Err(Self::unavailable(format!("embedder did not answer: {e}"))),
        }
    }

    /// The entity's knowledge actor, spawned (loading or rebuilding its index) if needed.
    pub async fn actor(&self, entity_id: &str) -> Result<ActorRef<KnowledgeMsg>> {
        for _ in 0..50 {
            if let Some(a) = find_knowledge(&self.namespace, entity_id) {
                return Ok(a);
            }
            let snapshot = self.config.index_dir.as_ref().map(|d| d.join(format!("{entity_id}.hnsw")));
            if let Some(dir) = &self.config.index_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Self::unavailable(format!("cannot create {}: {e}", dir.display())))?;
            }
            let args = KnowledgeArgs {
                entity_id: entity_id.to_string(),
                store: self.store.clone(),
                snapshot,
                dim: EMBEDDING_DIM,
            };
            match Actor::spawn(Some(knowledge_actor_name(&self.namespace, entity_id)), KnowledgeActor, args).await {
                Ok((a, _)) => {
                    self.actors.lock().unwrap().insert(entity_id.to_string(), a.clone());
                    return Ok(a);
                }
                Err(ractor::SpawnErr::ActorAlreadyRegistered(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => return Err(Self::unavailable(format!("index of entity `{entity_id}` failed to load: {e}"))),
            }
        }
        Err(Self::unavailable("knowledge actor keeps failing to start"))
    }

    /// Persists items, then indexes them. Returns their ids.
    pub async fn add_items(&self, entity_id: &str, items: Vec<NewKnowledgeItem>) -> Result<Vec<u64>> {
        let ids = self.store.add_knowledge_items(items.clone()).await?;
        self.index_items(entity_id, &ids, items).await?;
        Ok(ids)
    }

    async fn index_items(&self, entity_id: &str, ids: &[u64], items: Vec<NewKnowledgeItem>) -> Result<()> {
        let actor = self.actor(entity_id).await?;
        let batch = ids
            .iter()
            .zip(items)
            .map(|(id, item)| (*id, meta_of(&item), item.vector))
            .map(|(i, m, v)| (i, v, m))
            .collect();
        actor.cast(KnowledgeMsg::Add { items: batch }).map_err(|e| Self::unavailable(e.to_string()))
    }

    /// Creates the document (PROCESSING, on this node) and runs its ingest job in the
    /// background, when a slot is free; refused when too many jobs wait already.
    pub async fn ingest(self: &Arc<Self>, mut doc: Document, bytes: Vec<u8>) -> Result<Document> {
        let format = DocumentFormat::detect(&doc.content_type, &doc.filename)
            .map_err(|e| ApiError::invalid("content_type", e.to_string()))?;
        doc.content_type = format.content_type().to_string();
        doc.node_id = Some(self.node_id.clone());
        // load the model now, so that a missing model is an error for the caller
        self.model().await?;
        let mut ticket = self.jobs.ticket(&doc.entity_id)?;
        let timeout = Duration::from_millis(self.config.job_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let doc = self.store.create_document(doc).await?;
        let this = self.clone();
        let job = doc.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let run = async {
                let slots = ticket.slots().await;
                this.prepare(&job, format, bytes, slots, deadline).await
            };
            let (status, error, items) = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(items)) => (DocumentStatus::Completed, None, items),
                Ok(Err(e)) => (DocumentStatus::Failed, Some(e.to_string()), Vec::new()),
                Err(_) => {
                    let m = format!(
                        "the ingest job did not finish within {} ms (knowledge.job_timeout_ms, waiting for a slot \
                         included): split the document, or raise the limit",
                        timeout.as_millis()
                    );
                    (DocumentStatus::Failed, Some(m), Vec::new())
                }
            };
            drop(ticket);
            let finished = this
                .store
                .finish_document(&job.id, DocumentStatus::Processing, status, error.clone(), items.clone())
                .await;
            match finished {
                Ok((_, ids)) => {
                    if let Err(e) = this.index_items(&job.entity_id, &ids, items).await {
                        warn!(document_id = %job.id, error = %e, "document stored but not indexed until restart");
                    }
                    info!(
                        document_id = %job.id,
                        %status,
                        chunks = ids.len(),
                        ms = started.elapsed().as_millis() as u64,
                        error = error.as_deref().unwrap_or(""),
                        "ingest job finished"
                    );
                }
                Err(e) => warn!(document_id = %job.id, error = %e, "ingest job result not recorded"),
            }
        });
        Ok(doc)
    }

    /// Extract, chunk, embed. The extraction runs on the blocking pool and holds the
    /// job's slots until it returns, even past a timeout, so that abandoned work still
    /// counts against the node's bound.
    async fn prepare(
        &self,
        doc: &Document,
        format: DocumentFormat,
        bytes: Vec<u8>,
        slots: Slots,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<NewKnowledgeItem>> {
        let model = self.model().await?;
        let chunking = ChunkConfig { max_tokens: self.config.chunk_tokens, overlap_tokens: self.config.chunk_overlap };
        let limits = ExtractLimits {
            pdf_max_decompressed_bytes: self.config.pdf_max_decompressed_bytes,
            pdf_max_time: Duration::from_millis(self.config.pdf_max_extract_ms)
                .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        };
        let (slots, chunks) = tokio::task::spawn_blocking(move || {
            let chunks = extract_text_within(&bytes, format, &limits)
                .map(|text| chunk_text(model.tokenizer(), &text, &chunking))
                .map_err(|e| e.to_string());
            (slots, chunks)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let chunks = chunks.map_err(ApiError::FailedPrecondition)?;
        let mut items = Vec::with_capacity(chunks.len());
        for group in chunks.chunks(self.config.embed_max_batch.max(1)) {
            let vectors = self.embed(group.iter().map(|c| c.text.clone()).collect()).await?;
            for (c, vector) in group.iter().zip(vectors) {
                items.push(NewKnowledgeItem {
                    entity_id: doc.entity_id.clone(),
                    kind: ItemKind::DocumentChunk,
                    department_id: doc.department_id.clone(),
                    document_id: Some(doc.id.clone()),
                    chunk_index: Some(c.index as u32),
                    room_id: None,
                    segment_seq: None,
                    participant_id: None,
                    text: c.text.clone(),
                    vector,
                });
            }
        }
        drop(slots);
        Ok(items)
    }

    /// Removes a document's chunks from storage and, at once, from search.
    pub async fn delete_document(&self, doc: &Document) -> Result<usize> {
        let ids = self.store.delete_document(&doc.id).await?;
        if let Ok(actor) = self.actor(&doc.entity_id).await {
            let _ = ractor::call_t!(actor, |reply| KnowledgeMsg::Remove { ids: ids.clone(), reply }, 10_000);
        }
        Ok(ids.len())
    }

    /// The best matches for `query` in an entity's index.
    pub async fn search(
        &self,
        entity_id: &str,
        query: &str,
        k: usize,
        min_score: f32,
        filter: SearchFilter,
    ) -> Result<Vec<SearchHit>> {
        let vector = self.embed(vec![query.to_string()]).await?.pop().unwrap_or_default();
        self.search_vector(entity_id, vector, k, min_score, filter).await
    }

    async fn search_vector(
        &self,
        entity_id: &str,
        vector: Vec<f32>,
        k: usize,
        min_score: f32,
        filter: SearchFilter,
    ) -> Result<Vec<SearchHit>> {
        let actor = self.actor(entity_id).await?;
        let query = Query { vector, k, min_score, filter };
        let hits: Vec<Hit> = match ractor::call_t!(actor, |reply| KnowledgeMsg::Search { query, reply }, 10_000) {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Err(ApiError::Internal(format!("search failed: {e}"))),
            Err(e) => return Err(Self::unavailable(format!("index did not answer: {e}"))),
        };
        let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        let mut items: HashMap<u64, NewKnowledgeItem> =
            self.store.get_knowledge_items(&ids).await?.into_iter().map(|k| (k.id, k.item)).collect();
        let mut filenames: HashMap<String, String> = HashMap::new();
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            // an item deleted between the search and the read is simply not a hit
            let Some(mut item) = items.remove(&h.id) else { continue };
            item.vector = Vec::new();
            let filename = match &item.document_id {
                Some(d) => match filenames.get(d) {
                    Some(f) => Some(f.clone()),
                    None => {
                        let f = self.store.get_document(d).await.map(|d| d.filename).unwrap_or_default();
                        filenames.insert(d.clone(), f.clone());
                        Some(f)
                    }
                },
                None => None,
            };
            out.push(SearchHit { score: h.score, item_id: h.id, item, filename });
        }
        Ok(out)
    }

    /// Stops every knowledge actor (each saves its snapshot).
    pub async fn shutdown(&self) {
        let actors: Vec<_> = self.actors.lock().unwrap().drain().map(|(_, a)| a).collect();
        for a in actors {
            let _ = a.stop_and_wait(Some("runtime shutdown".into()), Some(Duration::from_secs(5))).await;
        }
        if let Some(e) = self.embedder.lock().unwrap().take() {
            e.stop(None);
        }
    }
}

/// Whether a segment reads as a question.
pub fn is_question(text: &str) -> bool {
    let t = text.trim();
    if t.ends_with('?') {
        return true;
    }
    let first = t.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
    let first = first.trim_matches(|c: char| !c.is_alphanumeric());
    matches!(
        first,
        "what"
            | "how"
            | "when"
            | "where"
            | "who"
            | "why"
            | "which"
            | "can"
            | "could"
            | "does"
            | "do"
            | "is"
            | "are"
            | "will"
            | "should"
            | "would"
            | "did"
    )
}

/// Indexes each recorded transcript segment and suggests matching knowledge to the room.
pub(crate) struct SuggestionListener {
    pub knowledge: Weak<Knowledge>,
    pub namespace: String,
}

impl SegmentListener for SuggestionListener {
    fn on_segments(&self, room: &Room, segments: &[TranscriptSegment]) {
        let Some(knowledge) = self.knowledge.upgrade() else { return };
        if !knowledge.config.enabled || segments.is_empty() {
            return;
        }
        let (room, segments, namespace) = (room.clone(), segments.to_vec(), self.namespace.clone());
        tokio::spawn(async move {
            if let Err(e) = suggest(&knowledge, &namespace, &room, segments).await {
                warn!(room_id = %room.id, error = %e, "transcript not indexed / no suggestions");
            }
        });
    }
}

async fn suggest(knowledge: &Knowledge, namespace: &str, room: &Room, segments: Vec<TranscriptSegment>) -> Result<()> {
    let started = Instant::now();
    let vectors = knowledge.embed(segments.iter().map(|s| s.text.clone()).collect()).await?;
    let items: Vec<NewKnowledgeItem> = segments
        .iter()
        .zip(&vectors)
        .map(|(s, v)| NewKnowledgeItem {
            entity_id: room.entity_id.clone(),
            kind: ItemKind::TranscriptSegment,
            department_id: room.department_id.clone(),
            document_id: None,
            chunk_index: None,
            room_id: Some(room.id.clone()),
            segment_seq: Some(s.seq),
            participant_id: Some(s.participant_id.clone()),
            text: s.text.clone(),
            vector: v.clone(),
        })
        .collect();
    knowledge.add_items(&room.entity_id, items).await?;
    metrics::histogram!("huddle_transcript_searchable_seconds").record(started.elapsed().as_secs_f64());
    let config = knowledge.config();
    for (segment, vector) in segments.iter().zip(vectors) {
        let filter = SearchFilter {
            kinds: Some(vec![index::ItemKind::Document]),
            department_id: room.department_id.clone(),
            room_id: None,
        };
        let hits = knowledge.search_vector(&room.entity_id, vector, 3, config.suggestion_min_score, filter).await?;
        let question = is_question(&segment.text);
        let Some(room_actor) = find_room(namespace, &room.id) else { return Ok(()) };
        for (i, hit) in hits.into_iter().enumerate().take(if question { 1 } else { config.suggestions_per_segment }) {
            let suggestion = Suggestion {
                item_id: hit.item_id,
                text: hit.item.text,
                document_id: hit.item.document_id.unwrap_or_default(),
                filename: hit.filename.unwrap_or_default(),
                chunk_index: hit.item.chunk_index.unwrap_or_default(),
                score: hit.score,
                answer_to_question: question && i == 0,
                segment_seq: segment.seq,
                participant_id: segment.participant_id.clone(),
            };
            let cooldown = Duration::from_millis(config.suggestion_cooldown_ms);
            let _ = room_actor.cast(huddle_actors::room::RoomMsg::Suggest { suggestion, cooldown });
        }
    }
    Ok(())
}

/// Where index snapshots go by default for a database URL: next to a SQLite file, or
/// none (memory only, rebuilt at start) for other databases.
pub fn default_index_dir(database_url: &str) -> Option<PathBuf> {
    let path = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.index")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_recognised() {
        for q in ["What is our refund policy?", "how do I reset my password", "Can we ship on Friday", "ok?"] {
            assert!(is_question(q), "{q}");
        }
        for s in ["We ship on Friday.", "Refunds take five days", "The question is open."] {
            assert!(!is_question(s), "{s}");
        }
    }

    #[test]
    fn index_snapshots_go_next_to_sqlite_files() {
        assert_eq!(default_index_dir("sqlite://huddle.db"), Some(PathBuf::from("huddle.db.index")));
        assert_eq!(default_index_dir("sqlite:///var/lib/h.db?mode=rwc"), Some(PathBuf::from("/var/lib/h.db.index")));
        assert_eq!(default_index_dir("sqlite::memory:"), None);
        assert_eq!(default_index_dir("postgres://x/y"), None);
    }
}
