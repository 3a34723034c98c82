//! Webhook delivery: an HTTP POST of `{type, timestamp, data}` to an endpoint,
//! signed as the Standard Webhooks specification says (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`). The id is the notification's id, so a
//! redelivery carries the same id and receivers can drop duplicates.
//!
//! Unless private targets are allowed, a request never reaches a loopback,
//! private, link-local or otherwise internal address: IP literals are checked
//! before sending, and host names go through [`GuardedResolver`], which drops such
//! addresses at connect time (so a DNS answer cannot rebind past the check).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use huddle_core::{Notification, WebhookEndpoint, now_ms};
use huddle_storage::{DynStore, StorageError};
use tracing::warn;

use super::signing::{decode_secret, signature_header};
use super::{AttemptResult, Deliver, retry_after_header};

/// How long a loaded endpoint (URL, secrets, disabled flag) is reused before it is
/// read again: a rotation or a disable takes effect within this time.
const ENDPOINT_TTL: Duration = Duration::from_secs(1);

/// Headers a caller may not set on an endpoint: huddle sets them itself.
pub const RESERVED_HEADERS: &[&str] =
    &["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host"];

/// Why an address was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves only to loopback, private or internal addresses: refused to guard against SSRF \
     (set notify.allow_private_targets = true to allow)"
)]
pub struct PrivateTargetRefused {
    pub host: String,
}

/// Whether an address is reachable from the public internet (not loopback,
/// private, link-local, shared, unspecified, multicast or documentation space).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// Checks a webhook URL: http or https, with a host; when private targets are not
/// allowed, an IP-literal host must be public. Returns a message to show the caller.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let shown = huddle_core::redact::url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid url `{shown}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url `{shown}` must use http or https"));
    }
    let Some(host) = parsed.host() else { return Err(format!("url `{shown}` has no host")) };
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") => {
                return Err(PrivateTargetRefused { host: d.to_string() }.to_string());
            }
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = ip
            && !is_public(ip)
        {
            return Err(PrivateTargetRefused { host: ip.to_string() }.to_string());
        }
    }
    Ok(())
}

/// A DNS resolver that drops non-public addresses (see [`is_public`]).
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(PrivateTargetRefused { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Settings of webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub timeout: Duration,
    pub allow_private_targets: bool,
    /// Connections kept open per host for reuse.
    pub max_idle_per_host: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig { timeout: Duration::from_secs(30), allow_private_targets: false, max_idle_per_host: 64 }
    }
}

/// Endpoints as last read, shared by the deliverer and whoever changes endpoints
/// on this node (so a rotation or a disable here takes effect at once; other nodes
/// see it within [`ENDPOINT_TTL`]).
#[derive(Clone, Default)]
pub struct EndpointCache(Arc<DashMap<String, (Instant, Arc<WebhookEndpoint>)>>);

impl EndpointCache {
    pub fn invalidate(&self, endpoint_id: &str) {
        self.0.remove(endpoint_id);
    }
}

/// Delivers webhook notifications (`recipient` is the endpoint id).
pub struct WebhookDeliverer {
    store: DynStore,
    client: reqwest::Client,
    config: WebhookConfig,
    endpoints: EndpointCache,
}

impl WebhookDeliverer {
    pub fn new(store: DynStore, config: WebhookConfig, endpoints: EndpointCache) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(config.max_idle_per_host)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("huddle-webhooks/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true);
        if !config.allow_private_targets {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let client = builder.build().map_err(|e| format!("cannot build the webhook http client: {e}"))?;
        Ok(WebhookDeliverer { store, client, config, endpoints })
    }

    async fn endpoint(&self, id: &str) -> Result<Arc<WebhookEndpoint>, StorageError> {
        if let Some(entry) = self.endpoints.0.get(id)
            && entry.0.elapsed() < ENDPOINT_TTL
        {
            return Ok(entry.1.clone());
        }
        let ep = Arc::new(self.store.get_endpoint(id).await?);
        self.endpoints.0.insert(id.to_string(), (Instant::now(), ep.clone()));
        Ok(ep)
    }

    /// The JSON body of a notification: `{type, timestamp, data}`.
    pub fn body(n: &Notification) -> Vec<u8> {
        let body = serde_json::json!({
            "type": n.content.event_type,
            "timestamp": huddle_core::time::rfc3339(n.created_at_ms, true),
            "data": n.content.data,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Whether an error (or one of its causes) is the SSRF guard's refusal.
fn refused_by_guard(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<PrivateTargetRefused>() {
            return Some(r.to_string());
        }
        cur = e.source();
    }
    None
}

#[async_trait::async_trait]
impl Deliver for WebhookDeliverer {
    async fn deliver(&self, n: &Notification) -> AttemptResult {
        let ep = match self.endpoint(&n.recipient).await {
            Ok(ep) => ep,
            Err(StorageError::NotFound { .. }) => {
                return AttemptResult::fail(None, format!("webhook endpoint `{}` not found", n.recipient));
            }
            Err(e) => {
                // The database's words stay in the log: `last_error` is shown to the tenant.
                warn!(endpoint = %n.recipient, error = %e, "cannot load a webhook endpoint");
                return AttemptResult::retry(None, None, "cannot load the webhook endpoint: database unavailable");
            }
        };
        if ep.disabled {
            let why = ep.disabled_reason.as_deref().unwrap_or("disabled");
            return AttemptResult::fail(None, format!("webhook endpoint `{}` is disabled: {why}", ep.id));
        }
        if let Err(e) = check_url(&ep.url, self.config.allow_private_targets) {
            return AttemptResult::fail(None, e);
        }
        let now = now_ms();
        let secrets: Vec<Vec<u8>> = ep.signing_secrets(now).into_iter().filter_map(|s| decode_secret(s).ok()).collect();
        if secrets.is_empty() {
            return AttemptResult::fail(None, format!("webhook endpoint `{}` has no valid secret: rotate it", ep.id));
        }
        let body = Self::body(n);
        let ts = now.div_euclid(1000);
        let mut req = self
            .client
            .post(&ep.url)
            .header("content-type", "application/json")
            .header("webhook-id", &n.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature_header(&secrets, &n.id, ts, &body));
        for (k, v) in &ep.headers {
            req = req.header(k, v);
        }
        match req.body(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = retry_after_header(resp.headers());
                let excerpt = if resp.status().is_success() {
                    String::new()
                } else {
                    let bytes = tokio::time::timeout(Duration::from_secs(2), resp.bytes()).await;
                    match bytes {
                        Ok(Ok(b)) => String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned(),
                        _ => String::new(),
                    }
                };
                AttemptResult::from_http_status(status, retry_after, &excerpt)
            }
            Err(e) => {
                if let Some(refusal) = refused_by_guard(&e) {
                    warn!(endpoint = %ep.id, url = %huddle_core::redact::url(&ep.url), "webhook target refused by the SSRF guard");
                    return AttemptResult::fail(None, refusal);
                }
                if e.is_timeout() {
                    AttemptResult::retry(None, None, format!("timed out after {:?}", self.config.timeout))
                } else {
                    // Without the URL: its userinfo or query string may hold a token.
                    let e = e.without_url();
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg.push_str(": ");
                        msg.push_str(&s.to_string());
                        src = s.source();
                    }
                    AttemptResult::retry(None, None, msg)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("ftp://example.com/hook", false).unwrap_err().contains("http or https"));
        assert!(check_url("not a url", false).unwrap_err().contains("invalid url"));
        assert!(check_url("http://127.0.0.1:8080/hook", false).unwrap_err().contains("SSRF"));
        assert!(check_url("http://localhost/hook", false).unwrap_err().contains("SSRF"));
        assert!(check_url("http://[::1]/hook", false).unwrap_err().contains("SSRF"));
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
    }
}
