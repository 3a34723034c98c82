//! The HTTP side of a node: `GET /healthz` (200 when the database answers,
//! 503 otherwise) and `GET /metrics` (Prometheus text format).

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Runtime;

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed by an embedding
        // application; then ours only renders what it was given.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!("huddle_room_restarts_total", "Room actors restarted after a failure");
    metrics::describe_counter!("huddle_supervisor_restarts_total", "Room supervisors restarted after a failure");
    metrics::describe_gauge!("huddle_rooms_live", "Room actors currently running");
    metrics::describe_counter!("huddle_grpc_requests_total", "gRPC requests by method and code");
    metrics::gauge!("huddle_up").set(1.0);
}

pub fn router(rt: Runtime) -> Router {
    prometheus();
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics_text)).with_state(rt)
}

async fn healthz(State(rt): State<Runtime>) -> (StatusCode, String) {
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        rt.store().list_entities(huddle_storage::PageRequest { size: 1, token: String::new() }),
    )
    .await;
    match probe {
        Ok(Ok(_)) if !rt.closing().is_cancelled() => (StatusCode::OK, "ok\n".into()),
        Ok(Ok(_)) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database error: {e}\n")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database did not answer within 2s\n".into()),
    }
}

async fn metrics_text() -> String {
    prometheus().render()
}
