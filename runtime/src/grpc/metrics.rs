//! A tower layer that counts gRPC requests and records their latency:
//! `huddle_grpc_requests_total{method, code}` and
//! `huddle_grpc_request_duration_seconds{method}` (time to response headers).
//!
//! `code` is the status sent in the response headers, which is where gRPC
//! puts it for every unary error; successful calls and stream outcomes are
//! counted as `0` (OK).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use tower_layer::Layer;
use tower_service::Service;

#[derive(Clone, Copy, Debug, Default)]
pub struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// Paths served besides huddle's own services.
const OTHER_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Every method path this server serves, without its leading `/`, by path.
fn known_methods() -> &'static HashMap<String, &'static str> {
    static KNOWN: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let paths = huddle_proto::method_paths().into_iter().chain(OTHER_SERVICES.iter().map(|p| p.to_string()));
        paths
            .map(|path| {
                let label: &'static str = String::leak(path.trim_start_matches('/').to_string());
                (path, label)
            })
            .collect()
    })
}

/// A method this server serves keeps its name; anything else is `other`, so a
/// client (authenticated or not) cannot grow the label set.
fn method_label(path: &str) -> &'static str {
    known_methods().get(path).copied().unwrap_or("other")
}

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(resp) => resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_string(),
                Err(_) => "transport".to_string(),
            };
            metrics::histogram!("huddle_grpc_request_duration_seconds", "method" => method)
                .record(start.elapsed().as_secs_f64());
            metrics::counter!("huddle_grpc_requests_total", "method" => method, "code" => code).increment(1);
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label("/huddle.v1.Rooms/GetRoom"), "huddle.v1.Rooms/GetRoom");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "grpc.health.v1.Health/Check");
        assert_eq!(method_label("/huddle.v1.Entities/ListApiKeys"), "huddle.v1.Entities/ListApiKeys");
        assert_eq!(method_label("/evil/x"), "other");
        assert_eq!(method_label("/huddle.v1.Rooms/NoSuchMethod"), "other");
        assert_eq!(method_label("/huddle.v1.Made.Up/Anything"), "other");
        assert_eq!(method_label("/grpc.health.v1.Health/Nope"), "other");
    }
}
