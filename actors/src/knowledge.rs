//! `KnowledgeActor`: owns one entity's vector index (knowledge-base chunks and
//! transcript segments), one actor per entity, spawned on demand.
//!
//! The items themselves (text, embedding, filters) live in storage; the index is a
//! cache of them that is saved as a snapshot file for a fast restart. At start the
//! snapshot is used only when it matches storage (same item count and largest id);
//! otherwise — missing, stale or corrupt — the index is rebuilt from storage and saved
//! again. Callers persist first and then tell the actor, so a crash loses nothing: the
//! next start rebuilds.

use std::path::PathBuf;
use std::time::Duration;

use huddle_core::{ItemKind, KnowledgeItem};
use huddle_models::index::{self, Hit, IndexConfig, ItemMeta, SearchFilter, VectorIndex};
use huddle_storage::DynStore;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{info, warn};

/// Items read from storage per page while rebuilding.
const REBUILD_PAGE: u32 = 2_000;
/// Changes are saved to the snapshot this long after the first unsaved one.
const SNAPSHOT_DELAY: Duration = Duration::from_secs(2);

/// The registry name of an entity's knowledge actor.
pub fn knowledge_actor_name(namespace: &str, entity_id: &str) -> String {
    format!("{namespace}/knowledge/{entity_id}")
}

pub fn find_knowledge(namespace: &str, entity_id: &str) -> Option<ActorRef<KnowledgeMsg>> {
    ractor::registry::where_is(knowledge_actor_name(namespace, entity_id)).map(ActorRef::from)
}

/// The index's meta for a stored item.
pub fn meta_of(item: &huddle_core::NewKnowledgeItem) -> ItemMeta {
    ItemMeta {
        kind: Some(match item.kind {
            ItemKind::DocumentChunk => index::ItemKind::Document,
            ItemKind::TranscriptSegment => index::ItemKind::Transcript,
        }),
        department_id: item.department_id.clone(),
        room_id: item.room_id.clone(),
        document_id: item.document_id.clone(),
    }
}

pub struct KnowledgeActor;

pub struct KnowledgeArgs {
    pub entity_id: String,
    pub store: DynStore,
    /// Where the snapshot lives; `None` keeps the index in memory only.
    pub snapshot: Option<PathBuf>,
    pub dim: usize,
}

pub struct KnowledgeState {
    args: KnowledgeArgs,
    index: VectorIndex,
    dirty: bool,
    save_scheduled: bool,
}

/// What a search looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub vector: Vec<f32>,
    pub k: usize,
    pub min_score: f32,
    pub filter: SearchFilter,
}

pub enum KnowledgeMsg {
    /// Adds stored items to the index (replacing any with the same id).
    Add {
        items: Vec<(u64, Vec<f32>, ItemMeta)>,
    },
    /// Removes items; effective for the next search. Replies when done.
    Remove {
        ids: Vec<u64>,
        reply: RpcReplyPort<usize>,
    },
    Search {
        query: Query,
        reply: RpcReplyPort<Result<Vec<Hit>, String>>,
    },
    /// Items in the index.
    Len {
        reply: RpcReplyPort<usize>,
    },
    /// Internal: writes the snapshot if anything changed.
    Save,
}

impl KnowledgeState {
    fn changed(&mut self, myself: &ActorRef<KnowledgeMsg>) {
        self.dirty = true;
        if self.args.snapshot.is_some() && !self.save_scheduled {
            self.save_scheduled = true;
            myself.send_after(SNAPSHOT_DELAY, || KnowledgeMsg::Save);
        }
    }

    fn save(&mut self) {
        self.save_scheduled = false;
        let Some(path) = &self.args.snapshot else { return };
        if !self.dirty {
            return;
        }
        match self.index.save(path) {
            Ok(()) => self.dirty = false,
            Err(e) => warn!(entity_id = %self.args.entity_id, error = %e, "index snapshot not saved"),
        }
    }
}

/// Builds the index from storage.
async fn rebuild(store: &DynStore, entity_id: &str, dim: usize) -> Result<VectorIndex, ActorProcessingErr> {
    let mut index = VectorIndex::new(IndexConfig { dim, ..IndexConfig::default() });
    let mut after = 0;
    loop {
        let page: Vec<KnowledgeItem> = store.list_knowledge_items(entity_id, after, REBUILD_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let batch =
            page.into_iter().map(|k| (k.id, meta_of(&k.item), k.item.vector)).map(|(id, m, v)| (id, v, m)).collect();
        index.insert_batch(batch)?;
    }
    Ok(index)
}

impl Actor for KnowledgeActor {
    type Msg = KnowledgeMsg;
    type State = KnowledgeState;
    type Arguments = KnowledgeArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<KnowledgeMsg>,
        args: KnowledgeArgs,
    ) -> Result<KnowledgeState, ActorProcessingErr> {
        let started = std::time::Instant::now();
        let (count, max_id) = args.store.knowledge_fingerprint(&args.entity_id).await?;
        let snapshot = match &args.snapshot {
            Some(path) if path.exists() => {
                let (path, dim) = (path.clone(), args.dim);
                match tokio::task::spawn_blocking(move || VectorIndex::load(&path, dim)).await? {
                    Ok(index) if index.len() as u64 == count && index.max_id().unwrap_or(0) == max_id => Some(index),
                    Ok(index) => {
                        info!(entity_id = %args.entity_id, snapshot = index.len(), stored = count, "index snapshot is stale; rebuilding");
                        None
                    }
                    Err(e) => {
                        warn!(entity_id = %args.entity_id, error = %e, "index snapshot unusable; rebuilding");
                        None
                    }
                }
            }
            _ => None,
        };
        let (index, dirty) = match snapshot {
            Some(index) => (index, false),
            None => (rebuild(&args.store, &args.entity_id, args.dim).await?, true),
        };
        info!(
            entity_id = %args.entity_id,
            items = index.len(),
            from_snapshot = !dirty,
            ms = started.elapsed().as_millis() as u64,
            "knowledge index ready"
        );
        let mut state = KnowledgeState { args, index, dirty, save_scheduled: false };
        if state.dirty {
            state.save();
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<KnowledgeMsg>,
        state: &mut KnowledgeState,
    ) -> Result<(), ActorProcessingErr> {
        state.save();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<KnowledgeMsg>,
        msg: KnowledgeMsg,
        state: &mut KnowledgeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KnowledgeMsg::Add { items } => {
                if let Err(e) = state.index.insert_batch(items) {
                    warn!(entity_id = %state.args.entity_id, error = %e, "items not indexed");
                }
                state.changed(&myself);
            }
            KnowledgeMsg::Remove { ids, reply } => {
                let removed = ids.iter().filter(|id| state.index.remove(**id)).count();
                state.changed(&myself);
                let _ = reply.send(removed);
            }
            KnowledgeMsg::Search { query, reply } => {
                let result = state
                    .index
                    .search(&query.vector, query.k, None, &query.filter)
                    .map(|hits| hits.into_iter().filter(|h| h.score >= query.min_score).collect())
                    .map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            KnowledgeMsg::Len { reply } => {
                let _ = reply.send(state.index.len());
            }
            KnowledgeMsg::Save => state.save(),
        }
        Ok(())
    }
}
