//! The knowledge base end to end with the real all-MiniLM-L6-v2 weights: ingest (text,
//! Markdown, PDF), search with department and entity scoping, deletes, index snapshots
//! and rebuilds, transcript search, and live suggestions from streamed speech.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use huddle_core::{DocumentStatus, NewDepartment};
use huddle_models::fetch::fetch_embedder;
use huddle_runtime::{Api, ApiError, DocumentUpload, KnowledgeConfig, Runtime, SearchRequest, WatchItem};
use huddle_storage::PageRequest;
use tokio_stream::StreamExt;

use crate::common::{entity, eventually, human, room};

pub(crate) const REFUNDS: &str = "# Refund policy\n\nCustomers on an annual plan can ask for a full refund within 30 days of \
                       purchase. Refunds go back to the original payment method and take five business days.\n";
const SECURITY: &str = "# Security\n\nAll customer data is encrypted at rest with AES-256 and in transit with TLS. \
                        Data is stored in Frankfurt and never leaves the European Union.\n";
const ONBOARDING: &str = "New enterprise customers get a dedicated onboarding manager for sixty days. The kickoff \
                          call happens within three business days of signing.";

fn models_dir() -> PathBuf {
    match std::env::var_os("HUDDLE_MODELS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("models"),
    }
}

/// Installs the embedding model once per test process.
fn install() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        static LOCK: Mutex<()> = Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        fetch_embedder(&models_dir(), &|_| {}).expect("fetch the embedding model");
        models_dir()
    })
    .clone()
}

pub(crate) fn config(index_dir: Option<PathBuf>) -> KnowledgeConfig {
    KnowledgeConfig { models_dir: Some(install()), fetch_missing: false, index_dir, ..KnowledgeConfig::default() }
}

async fn runtime(dir: &Path, index: bool) -> Runtime {
    let cfg = tokio::task::spawn_blocking({
        let idx = index.then(|| dir.join("index"));
        move || config(idx)
    })
    .await
    .unwrap();
    let url = format!("sqlite://{}", dir.join("kb.db").display());
    Runtime::builder().database_url(url).knowledge(cfg).build().await.unwrap()
}

pub(crate) fn upload(entity_id: &str, department_id: Option<&str>, filename: &str) -> DocumentUpload {
    DocumentUpload {
        entity_id: entity_id.into(),
        department_id: department_id.map(str::to_string),
        filename: filename.into(),
        content_type: String::new(),
    }
}

pub(crate) async fn ingest(api: &Api, up: DocumentUpload, bytes: &[u8]) -> huddle_core::Document {
    let doc = api.ingest_document(up, bytes.to_vec()).await.unwrap();
    assert_eq!(doc.status, DocumentStatus::Processing);
    let id = doc.id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = api.get_ingest_job(&id).await.unwrap();
        if d.status != DocumentStatus::Processing {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "ingest did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn search(entity_id: &str, query: &str, department_id: Option<&str>) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        entity_id: entity_id.into(),
        department_id: department_id.map(str::to_string),
        k: 3,
        min_score: 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_ingested_searched_scoped_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), true).await;
    let api = rt.admin();
    let acme = entity(&api, "Acme", None).await;
    let sales = api
        .create_department(NewDepartment { entity_id: acme.id.clone(), name: "Sales".into(), ..Default::default() })
        .await
        .unwrap();

    let refunds = ingest(&api, upload(&acme.id, None, "refunds.md"), REFUNDS.as_bytes()).await;
    assert_eq!((refunds.status, refunds.error.as_deref()), (DocumentStatus::Completed, None), "{refunds:?}");
    assert!(refunds.chunks >= 1);
    assert_eq!(refunds.content_type, "text/markdown");
    let security = ingest(&api, upload(&acme.id, Some(&sales.id), "security.txt"), SECURITY.as_bytes()).await;
    assert_eq!(security.status, DocumentStatus::Completed);
    let pdf =
        ingest(&api, upload(&acme.id, None, "onboarding.pdf"), &huddle_models::extract::minimal_pdf(ONBOARDING)).await;
    assert_eq!(pdf.status, DocumentStatus::Completed, "{pdf:?}");

    // the right document comes first, with its filename and chunk
    let hits = api.search(search(&acme.id, "how long do refunds take to arrive", None)).await.unwrap();
    assert_eq!(hits[0].filename.as_deref(), Some("refunds.md"), "{hits:?}");
    assert!(hits[0].score > 0.4, "{hits:?}");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let hits = api.search(search(&acme.id, "who helps new enterprise customers get started", None)).await.unwrap();
    assert_eq!(hits[0].filename.as_deref(), Some("onboarding.pdf"), "{hits:?}");

    // department documents are visible to that department and to entity-wide search only
    let q = "where is customer data stored and is it encrypted";
    let in_sales = api.search(search(&acme.id, q, Some(&sales.id))).await.unwrap();
    assert_eq!(in_sales[0].filename.as_deref(), Some("security.txt"));
    let support = api
        .create_department(NewDepartment { entity_id: acme.id.clone(), name: "Support".into(), ..Default::default() })
        .await
        .unwrap();
    let in_support = api.search(search(&acme.id, q, Some(&support.id))).await.unwrap();
    assert!(in_support.iter().all(|h| h.filename.as_deref() != Some("security.txt")), "{in_support:?}");

    // min_score and k
    let mut strict = search(&acme.id, "refund", None);
    strict.min_score = 0.99;
    assert!(api.search(strict).await.unwrap().is_empty());

    // another entity's key sees nothing of Acme's
    let other = entity(&api, "Other", None).await;
    let theirs = rt.for_entity(other.id.clone());
    let e = theirs.search(search(&acme.id, "refund", None)).await.unwrap_err();
    assert!(matches!(e, ApiError::NotFound { what: "entity", .. }), "{e}");
    assert!(matches!(theirs.get_ingest_job(&refunds.id).await.unwrap_err(), ApiError::NotFound { .. }));
    assert!(theirs.search(search(&other.id, "refund", None)).await.unwrap().is_empty());

    // listing groups chunks by document
    let docs = api.list_documents(&acme.id, PageRequest::default()).await.unwrap().items;
    assert_eq!(docs.len(), 3);

    // deleting takes effect for search at once
    let removed = api.delete_document(&refunds.id).await.unwrap();
    assert_eq!(removed, refunds.chunks as usize);
    let hits = api.search(search(&acme.id, "how long do refunds take to arrive", None)).await.unwrap();
    assert!(hits.iter().all(|h| h.filename.as_deref() != Some("refunds.md")), "{hits:?}");
    assert!(matches!(api.get_ingest_job(&refunds.id).await.unwrap_err(), ApiError::NotFound { .. }));

    // bad input
    let e = api.ingest_document(upload(&acme.id, None, "x.png"), vec![1, 2, 3]).await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidArgument { field: "content_type", .. }), "{e}");
    let e = api.ingest_document(upload(&acme.id, None, "empty.txt"), vec![]).await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidArgument { field: "data", .. }), "{e}");
    let e = api.ingest_document(upload(&acme.id, Some(&other_dept(&api, &other.id).await), "a.txt"), b"x".to_vec());
    assert!(matches!(e.await.unwrap_err(), ApiError::InvalidArgument { field: "department_id", .. }));
    let failed = ingest(&api, upload(&acme.id, None, "broken.pdf"), b"%PDF-1.4 not really").await;
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert!(failed.error.unwrap().contains("PDF"));
    let bad_utf8 = ingest(&api, upload(&acme.id, None, "latin1.txt"), b"caf\xe9 au lait").await;
    assert_eq!(bad_utf8.status, DocumentStatus::Failed);
    let e = api.search(search(&acme.id, "   ", None)).await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidArgument { field: "query", .. }));
    let mut many = search(&acme.id, "refund", None);
    many.k = 1000;
    assert!(matches!(api.search(many).await.unwrap_err(), ApiError::InvalidArgument { field: "k", .. }));
    rt.shutdown().await;
}

async fn other_dept(api: &Api, entity_id: &str) -> String {
    api.create_department(NewDepartment { entity_id: entity_id.into(), name: "Elsewhere".into(), ..Default::default() })
        .await
        .unwrap()
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_survives_restarts_and_is_rebuilt_when_its_snapshot_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (acme_id, doc_id) = {
        let rt = runtime(dir.path(), true).await;
        let api = rt.admin();
        let acme = entity(&api, "Acme", None).await;
        let d = ingest(&api, upload(&acme.id, None, "refunds.md"), REFUNDS.as_bytes()).await;
        ingest(&api, upload(&acme.id, None, "security.md"), SECURITY.as_bytes()).await;
        rt.shutdown().await; // saves the snapshot
        (acme.id, d.id)
    };
    let snapshot = dir.path().join("index").join(format!("{acme_id}.hnsw"));
    assert!(snapshot.exists(), "a snapshot is written");

    let query = "how long do refunds take";
    for damage in ["none", "corrupt", "missing", "format-1"] {
        match damage {
            // an earlier release's snapshot (format 1 kept no graph): rebuilt, not read
            "format-1" => {
                let mut bytes = std::fs::read(&snapshot).unwrap();
                assert_eq!(&bytes[..8], b"HUDDLEIX");
                bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
                std::fs::write(&snapshot, bytes).unwrap();
            }
            "corrupt" => {
                let mut bytes = std::fs::read(&snapshot).unwrap();
                let n = bytes.len();
                bytes[n / 2] ^= 0xff;
                bytes.truncate(n - 7);
                std::fs::write(&snapshot, bytes).unwrap();
            }
            "missing" => std::fs::remove_file(&snapshot).unwrap(),
            _ => {}
        }
        let rt = runtime(dir.path(), true).await;
        let api = rt.admin();
        let hits = api.search(search(&acme_id, query, None)).await.unwrap();
        assert_eq!(hits[0].item.document_id.as_deref(), Some(doc_id.as_str()), "after {damage}: {hits:?}");
        rt.shutdown().await;
        assert!(snapshot.exists(), "the snapshot is written again after {damage}");
        let bytes = std::fs::read(&snapshot).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2, "rewritten in format 2 after {damage}");
    }

    // a snapshot that is stale (the database changed while the node was down) is rebuilt
    {
        let store = huddle_storage::open(&format!("sqlite://{}", dir.path().join("kb.db").display())).await.unwrap();
        store.delete_document(&doc_id).await.unwrap();
    }
    let rt = runtime(dir.path(), true).await;
    let hits = rt.admin().search(search(&acme_id, query, None)).await.unwrap();
    assert!(hits.iter().all(|h| h.item.document_id.as_deref() != Some(doc_id.as_str())), "{hits:?}");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_in_a_room_is_searchable_and_brings_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let whisper = tokio::task::spawn_blocking(crate::speech::model_path).await.unwrap();
    let cfg = tokio::task::spawn_blocking(|| config(None)).await.unwrap();
    let speech = huddle_runtime::SpeechConfig {
        whisper_model: Some(whisper),
        fetch_missing: false,
        ..huddle_runtime::SpeechConfig::default()
    };
    let rt = Runtime::builder().database_url(url).knowledge(cfg).speech(speech).build().await.unwrap();
    let api = rt.admin();
    let acme = entity(&api, "Acme", None).await;
    ingest(&api, upload(&acme.id, None, "refunds.md"), REFUNDS.as_bytes()).await;
    ingest(&api, upload(&acme.id, None, "security.md"), SECURITY.as_bytes()).await;
    let r = room(&api, &acme.id).await;
    let room_id = r.view.room.id.clone();
    api.start_room(&room_id).await.unwrap();
    let ada = api.join_room(&room_id, human("Ada")).await.unwrap();
    let mut watch = api.watch_room(&room_id).await.unwrap();

    let (pcm, rate) = crate::speech::speak_pcm16("Can a customer on an annual plan get a refund?");
    let pcm = crate::speech::with_silence(pcm, rate, 600);
    let mut s = api.open_audio(&room_id, &ada.id, rate).await.unwrap();
    for c in pcm.chunks(rate as usize / 10 * 2) {
        s.push_pcm16(c).await.unwrap();
    }
    s.finish().await.unwrap();

    // a suggestion event answers the question from the refund policy
    let suggestion = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match watch.next().await {
                Some(Ok(WatchItem::Event(e))) if e.kind() == "suggestion" => return e,
                Some(_) => {}
                None => panic!("watch ended"),
            }
        }
    })
    .await
    .expect("a suggestion arrives");
    assert_eq!(suggestion.data.data_value()["filename"], "refunds.md", "{:?}", suggestion.data);
    assert_eq!(suggestion.data.data_value()["answer_to_question"], true);
    assert_eq!(suggestion.data.data_value()["interaction_type"], "proactive_tip");
    assert_eq!(suggestion.data.data_value()["participant_id"], ada.id.as_str());

    // and what was said is searchable, in this room and across the entity's rooms
    let api2 = api.clone();
    let (eid, rid) = (acme.id.clone(), room_id.clone());
    eventually("the segment is searchable", move || {
        let (api, eid, rid) = (api2.clone(), eid.clone(), rid.clone());
        async move {
            let req = search(&eid, "refunds for yearly subscriptions", None);
            api.search_transcripts(req, Some(&rid)).await.map(|h| !h.is_empty()).unwrap_or(false)
        }
    })
    .await;
    let hits = api.search_transcripts(search(&acme.id, "refunds for yearly subscriptions", None), None).await.unwrap();
    assert_eq!(hits[0].item.room_id.as_deref(), Some(room_id.as_str()));
    assert_eq!(hits[0].item.participant_id.as_deref(), Some(ada.id.as_str()));
    assert!(hits[0].item.text.to_lowercase().contains("refund"), "{hits:?}");
    // knowledge-base chunks do not leak into transcript search, nor the reverse
    assert!(hits.iter().all(|h| h.filename.is_none()));
    let docs = api.search(search(&acme.id, "What is our refund policy for annual plans?", None)).await.unwrap();
    assert!(docs.iter().all(|h| h.item.room_id.is_none()));
    rt.shutdown().await;
}

mod grpc {
    //! The Knowledge service through a real tonic client on loopback.

    use huddle_proto::v1::entities_client::EntitiesClient;
    use huddle_proto::v1::knowledge_client::KnowledgeClient;
    use huddle_proto::v1::{self, ingest_document_request::Part};
    use huddle_runtime::Config;
    use huddle_runtime::server::Server;
    use tokio_util::sync::CancellationToken;
    use tonic::Code;
    use tonic::metadata::MetadataValue;

    use super::{REFUNDS, install};

    const KEY: &str = "knowledge-admin-key-0123456789abcdef";

    fn authed<T>(msg: T, key: &str) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {key}")).unwrap());
        req
    }

    pub(crate) fn upload(entity_id: &str, filename: &str, bytes: &[u8]) -> Vec<v1::IngestDocumentRequest> {
        let meta =
            v1::DocumentMetadata { entity_id: entity_id.into(), filename: filename.into(), ..Default::default() };
        let mut parts = vec![v1::IngestDocumentRequest { part: Some(Part::Metadata(meta)) }];
        parts.extend(bytes.chunks(40).map(|c| v1::IngestDocumentRequest { part: Some(Part::Data(c.to_vec())) }));
        parts
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn knowledge_service_over_grpc() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.http = "127.0.0.1:0".parse().unwrap();
        config.server.admin_key = Some(KEY.into());
        config.database.url = format!("sqlite://{}", dir.path().join("g.db").display());
        config.knowledge.models_dir = Some(tokio::task::spawn_blocking(install).await.unwrap());
        config.knowledge.fetch_missing = false;
        config.knowledge.max_document_bytes = 4_096;
        let server = Server::bind(config).await.unwrap();
        let addr = format!("http://{}", server.grpc_addr());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { server.run(stop).await.unwrap() }
        });
        let ch = tonic::transport::Channel::from_shared(addr).unwrap().connect().await.unwrap();
        let mut ents = EntitiesClient::new(ch.clone());
        let mut kb = KnowledgeClient::new(ch);
        let acme = ents
            .create_entity(authed(v1::CreateEntityRequest { name: "Acme".into(), ..Default::default() }, KEY))
            .await
            .unwrap()
            .into_inner();
        let other = ents
            .create_entity(authed(v1::CreateEntityRequest { name: "Other".into(), ..Default::default() }, KEY))
            .await
            .unwrap()
            .into_inner();
        let other_key = ents
            .create_api_key(authed(v1::CreateApiKeyRequest { entity_id: other.id.clone() }, KEY))
            .await
            .unwrap()
            .into_inner()
            .secret;

        let job = kb
            .ingest_document(authed(tokio_stream::iter(upload(&acme.id, "refunds.md", REFUNDS.as_bytes())), KEY))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(job.status, v1::IngestStatus::Processing as i32);
        let done = loop {
            let j = kb
                .get_ingest_job(authed(v1::GetIngestJobRequest { job_id: job.job_id.clone() }, KEY))
                .await
                .unwrap()
                .into_inner();
            if j.status != v1::IngestStatus::Processing as i32 {
                break j;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(done.status, v1::IngestStatus::Completed as i32, "{done:?}");
        let doc = done.document.unwrap();
        assert_eq!((doc.filename.as_str(), doc.bytes as usize), ("refunds.md", REFUNDS.len()));

        let hits = kb
            .search(authed(
                v1::SearchRequest {
                    query: "how long do refunds take".into(),
                    entity_id: acme.id.clone(),
                    k: 3,
                    ..Default::default()
                },
                KEY,
            ))
            .await
            .unwrap()
            .into_inner()
            .hits;
        assert_eq!(hits[0].filename, "refunds.md");
        assert_eq!(hits[0].kind, "document_chunk");
        assert!(hits[0].score > 0.3);

        // another entity's key: Acme's documents do not exist for it
        let e = kb
            .search(authed(
                v1::SearchRequest { query: "refunds".into(), entity_id: acme.id.clone(), ..Default::default() },
                &other_key,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = kb
            .get_ingest_job(authed(v1::GetIngestJobRequest { job_id: job.job_id.clone() }, &other_key))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let listed = kb
            .list_documents(authed(
                v1::ListDocumentsRequest { entity_id: other.id.clone(), ..Default::default() },
                &other_key,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.documents.is_empty());

        // malformed uploads
        let no_meta = vec![v1::IngestDocumentRequest { part: Some(Part::Data(b"x".to_vec())) }];
        let e = kb.ingest_document(authed(tokio_stream::iter(no_meta), KEY)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let big = vec![b'a'; 5_000];
        let e =
            kb.ingest_document(authed(tokio_stream::iter(upload(&acme.id, "big.txt", &big)), KEY)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("limit"), "{e:?}");
        let e =
            kb.ingest_document(authed(tokio_stream::iter(upload(&acme.id, "a.exe", b"MZ")), KEY)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = kb.delete_document(authed(v1::DeleteDocumentRequest { id: "nope".into() }, KEY)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);

        let removed = kb
            .delete_document(authed(v1::DeleteDocumentRequest { id: doc.id.clone() }, KEY))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(removed.removed_chunks, doc.chunks);
        let hits = kb
            .search(authed(
                v1::SearchRequest { query: "refunds".into(), entity_id: acme.id.clone(), ..Default::default() },
                KEY,
            ))
            .await
            .unwrap()
            .into_inner()
            .hits;
        assert!(hits.is_empty(), "{hits:?}");

        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), task).await.unwrap().unwrap();
    }
}

/// A runtime on `dir`'s database, as node `node`, with `tune` applied to the knowledge
/// settings.
async fn node(dir: &Path, node: &str, tune: impl FnOnce(&mut KnowledgeConfig)) -> Runtime {
    let mut cfg = tokio::task::spawn_blocking(|| config(None)).await.unwrap();
    tune(&mut cfg);
    let url = format!("sqlite://{}", dir.join("kb.db").display());
    let notify = huddle_runtime::NotifyConfig { node_id: Some(node.into()), ..Default::default() };
    Runtime::builder().database_url(url).knowledge(cfg).notify(notify).build().await.unwrap()
}

async fn finished(api: &Api, id: &str) -> huddle_core::Document {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let d = api.get_ingest_job(id).await.unwrap();
        if d.status != DocumentStatus::Processing {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "ingest did not finish: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_jobs_take_turns_per_entity_and_per_node() {
    let dir = tempfile::tempdir().unwrap();
    // each embedding waits a second for company, so every job lasts that long at least
    let rt = node(dir.path(), "node-a", |k| {
        (k.max_jobs_per_node, k.max_jobs_per_entity, k.max_queued_jobs, k.embed_max_wait_ms) = (2, 1, 3, 1_000);
        k.pdf_max_decompressed_bytes = 1024 * 1024;
    })
    .await;
    let api = rt.admin();
    let docs = [REFUNDS, SECURITY, ONBOARDING, "Invoices are sent on the first day of each month."];

    // one entity: its jobs run one at a time, the others wait; past max_queued_jobs, uploads are refused
    let acme = entity(&api, "Acme", None).await;
    let first = api.ingest_document(upload(&acme.id, None, "d0.md"), docs[0].as_bytes().to_vec()).await.unwrap();
    let rt2 = rt.clone();
    eventually("the first job runs", move || {
        let s = rt2.ingest_stats();
        async move { s.running == 1 && s.waiting == 0 }
    })
    .await;
    let mut ids = vec![first.id];
    for (i, text) in docs[1..].iter().enumerate() {
        let d = api.ingest_document(upload(&acme.id, None, &format!("d{}.md", i + 1)), text.as_bytes().to_vec());
        ids.push(d.await.unwrap().id);
    }
    let stats = rt.ingest_stats();
    assert_eq!((stats.running, stats.waiting), (1, 3), "one entity, one job at a time: {stats:?}");
    let e = api.ingest_document(upload(&acme.id, None, "more.md"), b"One too many.".to_vec()).await.unwrap_err();
    assert!(matches!(&e, ApiError::ResourceExhausted(m) if m.contains("max_queued_jobs")), "{e}");
    for id in &ids {
        assert_eq!(finished(&api, id).await.status, DocumentStatus::Completed);
    }
    assert_eq!(rt.ingest_stats().peak_running, 1);

    // three entities: two jobs at once on the node, one per entity
    let mut ids = Vec::new();
    for name in ["B", "C", "D"] {
        let e = entity(&api, name, None).await;
        for text in &docs[..1] {
            ids.push(api.ingest_document(upload(&e.id, None, "x.md"), text.as_bytes().to_vec()).await.unwrap().id);
        }
    }
    for id in &ids {
        assert_eq!(finished(&api, id).await.status, DocumentStatus::Completed);
    }
    let stats = rt.ingest_stats();
    assert_eq!((stats.peak_running, stats.peak_running_per_entity), (2, 1), "{stats:?}");
    assert_eq!((stats.running, stats.waiting), (0, 0), "{stats:?}");

    // a PDF bomb: a small file whose content stream inflates past the bound
    let bomb = huddle_models::extract::deflate(&vec![b' '; 2 * 1024 * 1024]);
    let pdf = huddle_models::extract::pdf_with_content("/Filter /FlateDecode", &bomb, &[]);
    assert!(pdf.len() < 16 * 1024);
    let failed = ingest(&api, upload(&acme.id, None, "bomb.pdf"), &pdf).await;
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert!(failed.error.as_deref().unwrap_or_default().contains("inflates past 1048576 bytes"), "{failed:?}");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_timeout_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // the embedding alone waits a second for company: the job cannot finish in 50 ms
    let rt = node(dir.path(), "node-a", |k| (k.job_timeout_ms, k.embed_max_wait_ms) = (50, 1_000)).await;
    let api = rt.admin();
    let acme = entity(&api, "Acme", None).await;
    let failed = ingest(&api, upload(&acme.id, None, "refunds.md"), REFUNDS.as_bytes()).await;
    assert_eq!((failed.status, failed.chunks), (DocumentStatus::Failed, 0));
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("did not finish within 50 ms") && error.contains("job_timeout_ms"), "{error}");
    let stats = rt.ingest_stats();
    assert_eq!((stats.running, stats.waiting), (0, 0), "{stats:?}");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fails_only_its_own_interrupted_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = node(dir.path(), "node-a", |_| {}).await;
    let acme = entity(&rt.admin(), "Acme", None).await;
    let now = huddle_core::now_ms();
    for (id, node) in [("job-a", "node-a"), ("job-b", "node-b")] {
        let doc = huddle_core::Document {
            id: id.into(),
            entity_id: acme.id.clone(),
            department_id: None,
            filename: format!("{id}.md"),
            content_type: "text/markdown".into(),
            bytes: 1,
            sha256: "00".repeat(32),
            status: DocumentStatus::Processing,
            error: None,
            chunks: 0,
            node_id: Some(node.into()),
            created_at_ms: now,
            updated_at_ms: now,
        };
        rt.store().create_document(doc).await.unwrap();
    }
    rt.shutdown().await;

    // node-a restarts: its job was interrupted; node-b's is still running elsewhere
    let rt = node(dir.path(), "node-a", |_| {}).await;
    let api = rt.admin();
    let a = api.get_ingest_job("job-a").await.unwrap();
    assert_eq!(a.status, DocumentStatus::Failed);
    assert!(a.error.unwrap().contains("interrupted by a restart"));
    assert_eq!(api.get_ingest_job("job-b").await.unwrap().status, DocumentStatus::Processing);
    rt.shutdown().await;
    let rt = node(dir.path(), "node-b", |_| {}).await;
    assert_eq!(rt.admin().get_ingest_job("job-b").await.unwrap().status, DocumentStatus::Failed);
    rt.shutdown().await;
}
