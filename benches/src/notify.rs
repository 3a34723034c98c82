//! `huddle-bench notify`: the notification outbox delivering webhooks to a local
//! receiver, against the same HTTP client posting the same signed requests with no
//! outbox (the ceiling of the receiver and the client on this machine).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use huddle_core::{Channel, NotificationStatus};
use huddle_runtime::{Api, NewEndpoint, NotifyConfig, Runtime, SendRequest};

use crate::grpc::ServerProc;
use crate::report::{Latencies, Measurement, Reporter, Summary};

/// Options of `huddle-bench notify`.
pub struct NotifyOpts {
    /// Notifications delivered in the throughput run.
    pub deliveries: usize,
    /// Pending notifications left by a crashed node for the recovery run.
    pub recovery: usize,
    /// Sends timed for enqueue latency (while the outbox delivers).
    pub sends: usize,
    /// Concurrent senders for the enqueue latency run.
    pub senders: usize,
    /// Run the receiver inside the bench's process (it then shares the node's
    /// tokio scheduler) instead of as a child process.
    pub in_process_receiver: bool,
}

/// Counts what the receiver got.
#[derive(Clone)]
enum Received {
    InProcess(Arc<AtomicU64>),
    /// `GET /count` of the receiver process.
    Process {
        client: reqwest::Client,
        url: String,
    },
}

impl Received {
    async fn get(&self) -> Result<u64> {
        match self {
            Received::InProcess(c) => Ok(c.load(Ordering::Relaxed)),
            Received::Process { client, url } => {
                Ok(client.get(url).send().await?.error_for_status()?.text().await?.trim().parse()?)
            }
        }
    }
}

/// A receiver answering 204 to every POST and counting them: a child process
/// (`serve-receiver`), or a task in this process with `in_process`.
async fn receiver(in_process: bool) -> Result<(String, Received, Option<ServerProc>)> {
    if !in_process {
        let proc = ServerProc::start("serve-receiver", &["serve-receiver"]).await?;
        let addr = proc.addr;
        let count = Received::Process { client: reqwest::Client::new(), url: format!("http://{addr}/count") };
        return Ok((format!("http://{addr}/hook"), count, Some(proc)));
    }
    use axum::routing::post;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, Received::InProcess(count), None))
}

fn config(enabled: bool) -> NotifyConfig {
    NotifyConfig {
        enabled,
        allow_private_targets: true,
        node_id: Some("bench-node".into()),
        retry_schedule: "0s,1s,1s".into(),
        ..NotifyConfig::default()
    }
}

async fn runtime(db: &str, enabled: bool) -> Result<Runtime> {
    Runtime::builder()
        .database_url(db)
        .notify(config(enabled))
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
}

/// Enqueues `n` webhook notifications (100 recipients per send request).
async fn enqueue(api: &Api, entity: &str, endpoints: &[String], n: usize) -> Result<()> {
    let mut left = n;
    let mut seq = 0;
    while left > 0 {
        let k = left.min(endpoints.len());
        api.send_notification(SendRequest {
            entity_id: entity.into(),
            channel: Some(Channel::Webhook),
            recipients: endpoints[..k].to_vec(),
            event_type: "bench.tick".into(),
            data: serde_json::json!({"seq": seq, "room": "r1", "text": "the quarterly report is ready for review"}),
            ..Default::default()
        })
        .await?;
        seq += 1;
        left -= k;
    }
    Ok(())
}

async fn count(rt: &Runtime, status: NotificationStatus) -> Result<u64> {
    let counts = rt.store().notification_counts(None).await?;
    Ok(counts.into_iter().find(|(s, _)| *s == status).map_or(0, |(_, c)| c))
}

async fn wait_delivered(rt: &Runtime, target: u64, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if count(rt, NotificationStatus::Delivered).await? >= target {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("only {} of {target} delivered after {timeout:?}", count(rt, NotificationStatus::Delivered).await?);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    db: String,
    entity: String,
    endpoints: Vec<String>,
}

/// A database with one entity and 100 endpoints at `url`, written by a runtime that
/// does not deliver.
async fn setup(url: &str) -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("notify.db").display());
    let rt = runtime(&db, false).await?;
    let api = rt.admin();
    let entity = api.create_entity(huddle_core::NewEntity { name: "Bench".into(), ..Default::default() }).await?.id;
    let mut endpoints = Vec::new();
    for _ in 0..100 {
        let ep = api
            .create_endpoint(NewEndpoint { entity_id: entity.clone(), url: url.into(), ..Default::default() })
            .await?;
        endpoints.push(ep.id);
    }
    rt.shutdown().await;
    Ok(Setup { _dir: dir, db, entity, endpoints })
}

/// The peer: the same signed POSTs with the same client settings, 256 in flight,
/// no outbox.
async fn direct_posts(url: &str, n: usize) -> Result<f64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).tcp_nodelay(true).build()?;
    let secret = huddle_actors::notify::signing::decode_secret(&huddle_actors::notify::signing::generate_secret())?;
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (client, url, secret) = (client.clone(), url.to_string(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let id = huddle_core::new_id();
            let body = serde_json::to_vec(&serde_json::json!({
                "type": "bench.tick", "timestamp": "2026-01-01T00:00:00.000Z",
                "data": {"seq": i, "room": "r1", "text": "the quarterly report is ready for review"}
            }))
            .unwrap_or_default();
            let ts = huddle_core::now_ms() / 1000;
            let sig = huddle_actors::notify::signing::signature_header(&[secret], &id, ts, &body);
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig)
                .body(body)
                .send()
                .await;
            drop(permit);
            r.map(|r| r.status().is_success()).unwrap_or(false)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await? {
            ok += 1;
        }
    }
    if ok != n {
        bail!("the direct peer got {ok} of {n} posts through");
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

pub fn run(opts: &NotifyOpts, rep: &Reporter) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run_async(opts, rep))
}

async fn run_async(opts: &NotifyOpts, rep: &Reporter) -> Result<()> {
    let (url, received, receiver_proc) = receiver(opts.in_process_receiver).await?;

    // 1. Throughput: N pending notifications, then a node that delivers them.
    rep.progress(&format!("enqueueing {} webhook notifications", opts.deliveries));
    let s = setup(&url).await?;
    {
        let rt = runtime(&s.db, false).await?;
        enqueue(&rt.admin(), &s.entity, &s.endpoints, opts.deliveries).await?;
        rt.shutdown().await;
    }
    rep.progress("delivering");
    let before = received.get().await?;
    let start = Instant::now();
    let rt = runtime(&s.db, true).await?;
    let took = wait_delivered(&rt, opts.deliveries as u64, Duration::from_secs(300)).await?;
    let total = start.elapsed().max(took);
    rt.shutdown().await;
    let got = received.get().await? - before;
    let rate = opts.deliveries as f64 / total.as_secs_f64();
    rep.emit(
        Measurement::new("notify", "deliveries_per_s_sqlite", rate.round(), "1/s")
            .with("notifications", opts.deliveries as u64)
            .with("received", got)
            .with("secs", total.as_secs_f64())
            .target(">= 2000/s", rate >= 2000.0),
    );

    rep.progress("direct posts (peer)");
    let peer = direct_posts(&url, opts.deliveries).await?;
    rep.emit(Measurement::new("notify", "peer_direct_posts_per_s", peer.round(), "1/s"));

    // 2. Enqueue latency while the outbox delivers.
    rep.progress("enqueue latency under load");
    let s2 = setup(&url).await?;
    {
        let rt = runtime(&s2.db, false).await?;
        enqueue(&rt.admin(), &s2.entity, &s2.endpoints, opts.deliveries).await?;
        rt.shutdown().await;
    }
    let rt = runtime(&s2.db, true).await?;
    let (lat, enqueue_secs) = time_sends(&rt.admin(), &s2, opts).await?;
    let delivered_meanwhile = count(&rt, NotificationStatus::Delivered).await?;
    rt.shutdown().await;
    // the same sends with no outbox running: what the deliveries cost them
    rep.progress("enqueue latency with no deliveries (peer)");
    let rt = runtime(&s2.db, false).await?;
    let (idle, _) = time_sends(&rt.admin(), &s2, opts).await?;
    rt.shutdown().await;
    let p99 = lat.quantile_us(0.99) / 1000.0;
    let idle_p99 = idle.quantile_us(0.99) / 1000.0;
    rep.emit(
        Measurement::new("notify", "enqueue_p50_ms", lat.quantile_us(0.5) / 1000.0, "ms")
            .with("senders", opts.senders as u64)
            .with("sends", lat.len() as u64)
            .with("sends_per_s", (lat.len() as f64 / enqueue_secs).round())
            .with("delivered_meanwhile", delivered_meanwhile),
    );
    rep.emit(Measurement::new("notify", "enqueue_p99_ms", p99, "ms").target("<= 5 ms", p99 <= 5.0));
    rep.emit(
        Measurement::new("notify", "peer_enqueue_p99_ms_no_deliveries", idle_p99, "ms")
            .with("p50_ms", idle.quantile_us(0.5) / 1000.0),
    );
    rep.emit(Measurement::new(
        "notify",
        "deliveries_per_s_while_sending",
        (delivered_meanwhile as f64 / enqueue_secs).round(),
        "1/s",
    ));

    // 3. Recovery: a node claimed N notifications and died; a restarted node takes
    // its claims back and delivers them.
    rep.progress(&format!("recovery with {} pending after a crash", opts.recovery));
    let s3 = setup(&url).await?;
    {
        let rt = runtime(&s3.db, false).await?;
        enqueue(&rt.admin(), &s3.entity, &s3.endpoints, opts.recovery).await?;
        // what the dead node had claimed when it died
        let claimed = rt
            .store()
            .claim_notifications(
                "bench-node",
                &[Channel::Webhook],
                &[],
                huddle_core::now_ms(),
                600_000,
                opts.recovery as u32,
            )
            .await?;
        if claimed.len() != opts.recovery {
            bail!("claimed {} of {}", claimed.len(), opts.recovery);
        }
        rt.shutdown().await;
    }
    let before = received.get().await?;
    let start = Instant::now();
    let rt = runtime(&s3.db, true).await?;
    let started = start.elapsed();
    let mut first = None;
    while first.is_none() {
        if received.get().await? > before {
            first = Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("nothing was delivered within 60 s of the restart");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    wait_delivered(&rt, opts.recovery as u64, Duration::from_secs(300)).await.context("recovery")?;
    let recovered = start.elapsed();
    rt.shutdown().await;
    let secs = recovered.as_secs_f64();
    rep.emit(
        Measurement::new("notify", "recovery_secs", secs, "s")
            .with("pending", opts.recovery as u64)
            .with("runtime_start_ms", started.as_millis() as u64)
            .with("first_delivery_ms", first.unwrap_or_default().as_millis() as u64)
            .target("<= 5 s", secs <= 5.0),
    );

    rep.summary(Summary::higher_is_better("notify", "deliveries_per_s_sqlite", rate, "direct-posts-no-outbox", peer));
    if let Some(p) = receiver_proc {
        p.stop().await?;
    }
    Ok(())
}

/// `opts.sends` single-recipient sends from `opts.senders` concurrent senders: each
/// one's latency, and how long they took together.
async fn time_sends(api: &Api, s: &Setup, opts: &NotifyOpts) -> Result<(Latencies, f64)> {
    let per_sender = opts.sends / opts.senders.max(1);
    let mut tasks = Vec::new();
    let start = Instant::now();
    for w in 0..opts.senders {
        let (api, entity, ep) = (api.clone(), s.entity.clone(), s.endpoints[w % s.endpoints.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_sender);
            for i in 0..per_sender {
                let t = Instant::now();
                api.send_notification(SendRequest {
                    entity_id: entity.clone(),
                    channel: Some(Channel::Webhook),
                    recipients: vec![ep.clone()],
                    event_type: "bench.tick".into(),
                    data: serde_json::json!({"sender": w, "i": i}),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("send failed: {e}"))?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((Latencies::from_durations(lat), start.elapsed().as_secs_f64()))
}
