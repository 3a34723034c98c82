//! `EmbedderActor`: one per runtime; batches embedding requests from everywhere (search
//! queries, document chunks, transcript segments) and runs the model off the async
//! executor.
//!
//! Dynamic batching: a request waits at most `max_wait` for company; as soon as
//! `max_batch` texts are waiting they go at once. While a batch runs, new requests
//! queue in the mailbox and form the next batch, so under load batches fill up by
//! themselves and a lone request costs one `max_wait`.

use std::sync::Arc;
use std::time::Duration;

use huddle_models::embed::Embedder;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::warn;

/// The registry name of a runtime's embedder.
pub fn embedder_actor_name(namespace: &str) -> String {
    format!("{namespace}/embedder")
}

pub struct EmbedderActor;

pub struct EmbedderArgs {
    pub model: Arc<Embedder>,
    /// Texts per model call at most.
    pub max_batch: usize,
    /// How long a request waits for others before its batch runs.
    pub max_wait: Duration,
}

/// Where a request's embeddings (or the error) go.
pub type EmbedReply = RpcReplyPort<Result<Vec<Vec<f32>>, String>>;

pub struct EmbedderState {
    args: EmbedderArgs,
    pending: Vec<(Vec<String>, EmbedReply)>,
    pending_texts: usize,
    flush_scheduled: bool,
}

pub enum EmbedderMsg {
    /// Embeddings (L2-normalised) of `texts`, in order.
    Embed { texts: Vec<String>, reply: EmbedReply },
    /// Internal: the oldest request has waited long enough.
    Flush,
}

impl EmbedderState {
    async fn run_batch(&mut self) {
        self.flush_scheduled = false;
        while !self.pending.is_empty() {
            // take whole requests up to max_batch texts (a bigger request goes alone)
            let mut take = 0;
            let mut texts = 0;
            for (t, _) in &self.pending {
                if take > 0 && texts + t.len() > self.args.max_batch {
                    break;
                }
                take += 1;
                texts += t.len();
            }
            let batch: Vec<_> = self.pending.drain(..take).collect();
            self.pending_texts -= texts;
            let all: Vec<String> = batch.iter().flat_map(|(t, _)| t.iter().cloned()).collect();
            let model = self.args.model.clone();
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = all.iter().map(String::as_str).collect();
                model.embed(&refs).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the embedding model panicked: {e}")));
            metrics::histogram!("huddle_embed_batch_seconds").record(started.elapsed().as_secs_f64());
            metrics::histogram!("huddle_embed_batch_texts").record(texts as f64);
            match result {
                Ok(mut vectors) => {
                    for (t, reply) in batch {
                        let rest = vectors.split_off(t.len());
                        let _ = reply.send(Ok(std::mem::replace(&mut vectors, rest)));
                    }
                }
                Err(e) => {
                    warn!(error = %e, texts, "embedding failed");
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            if self.pending_texts < self.args.max_batch {
                break; // the rest waits for company like any new request
            }
        }
    }
}

impl Actor for EmbedderActor {
    type Msg = EmbedderMsg;
    type State = EmbedderState;
    type Arguments = EmbedderArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<EmbedderMsg>,
        args: EmbedderArgs,
    ) -> Result<EmbedderState, ActorProcessingErr> {
        Ok(EmbedderState { args, pending: Vec::new(), pending_texts: 0, flush_scheduled: false })
    }

    async fn handle(
        &self,
        myself: ActorRef<EmbedderMsg>,
        msg: EmbedderMsg,
        state: &mut EmbedderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EmbedderMsg::Embed { texts, reply } => {
                if texts.is_empty() {
                    let _ = reply.send(Ok(Vec::new()));
                    return Ok(());
                }
                state.pending_texts += texts.len();
                state.pending.push((texts, reply));
                if state.pending_texts >= state.args.max_batch {
                    Box::pin(state.run_batch()).await;
                }
                if !state.pending.is_empty() && !state.flush_scheduled {
                    state.flush_scheduled = true;
                    myself.send_after(state.args.max_wait, || EmbedderMsg::Flush);
                }
            }
            EmbedderMsg::Flush => {
                if state.flush_scheduled {
                    Box::pin(state.run_batch()).await;
                }
                if !state.pending.is_empty() && !state.flush_scheduled {
                    state.flush_scheduled = true;
                    myself.send_after(state.args.max_wait, || EmbedderMsg::Flush);
                }
            }
        }
        Ok(())
    }
}
