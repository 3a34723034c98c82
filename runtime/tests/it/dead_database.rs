//! A database that dies under a running node: requests fail fast with
//! UNAVAILABLE, nothing is half-written, and the node recovers by itself when
//! the database returns. Postgres is reached through a TCP proxy in the test
//! that can cut every connection at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huddle_runtime::{ApiError, Runtime};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::{self, entity, eventually, human, room};

/// A loopback TCP proxy to Postgres that can be cut and restored on the same port.
struct Proxy {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(addr: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { break };
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { addr, task: Some(task) }
    }

    /// Drops the listener and every proxied connection (the JoinSet aborts them).
    async fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

#[tokio::test]
async fn dead_database_fails_fast_and_recovers() {
    let mut proxy = Proxy::start("127.0.0.1:0".parse().unwrap()).await;
    let base = common::postgres_url();
    let url = base.replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(url, base, "HUDDLE_TEST_POSTGRES_URL must point at 127.0.0.1:5432 for this test");
    let schema = format!("rt_dead_{}", &huddle_core::new_id().replace('-', "")[20..]);
    let store = huddle_storage::postgres::PostgresStore::open_in_schema(&url, &schema).await.unwrap();
    let rt = Runtime::builder().store(Arc::new(store)).build().await.unwrap();
    let api = rt.admin();
    let e = entity(&api, "Acme", None).await;
    let id = room(&api, &e.id).await.view.room.id;
    api.start_room(&id).await.unwrap();
    api.join_room(&id, human("Ada")).await.unwrap();

    proxy.cut().await;
    let started = Instant::now();
    let err = api.join_room(&id, human("Bob")).await.unwrap_err();
    assert!(matches!(err, ApiError::Unavailable(_)), "expected UNAVAILABLE, got {err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let err = api.get_room(&id).await.unwrap_err();
    assert!(matches!(err, ApiError::Unavailable(_)), "{err:?}");

    // the database comes back on the same address; the node recovers alone
    let _proxy = Proxy::start(proxy.addr).await;
    eventually("node recovers", || async { api.get_room(&id).await.is_ok() }).await;
    let got = api.get_room(&id).await.unwrap();
    assert_eq!(got.view.participants.len(), 1, "the refused join must not be written");
    api.join_room(&id, human("Bob")).await.unwrap();
    assert_eq!(api.get_room(&id).await.unwrap().view.participants.len(), 2);
    rt.shutdown().await;
}

#[tokio::test]
async fn healthz_of_a_dead_database_shows_no_error_text() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut proxy = Proxy::start("127.0.0.1:0".parse().unwrap()).await;
    let base = common::postgres_url();
    let url = base.replace("127.0.0.1:5432", &proxy.addr.to_string());
    let schema = format!("rt_health_{}", &huddle_core::new_id().replace('-', "")[20..]);
    let store = huddle_storage::postgres::PostgresStore::open_in_schema(&url, &schema).await.unwrap();
    let rt = Runtime::builder().store(Arc::new(store)).build().await.unwrap();
    let auth = Arc::new(huddle_runtime::auth::Authenticator::new("test-admin-key-0123456789abcdef"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let router = huddle_runtime::http::router(rt.clone(), auth);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let get = || async move {
        let mut s = TcpStream::connect(http).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let status_line = |out: &str| out.lines().next().unwrap_or_default().to_string();
    assert!(status_line(&get().await).contains(" 200"));

    proxy.cut().await;
    let out = get().await;
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(status_line(head).contains(" 503"), "{out}");
    assert!(body.trim() == "database unavailable" || body.trim().starts_with("database did not answer"), "{body}");
    for leak in ["127.0.0.1", "postgres", "error", "pool", "connection", &proxy.addr.port().to_string()] {
        assert!(!body.contains(leak), "/healthz shows `{leak}`: {body}");
    }
    server.abort();
    rt.shutdown().await;
}
