//! Webhook delivery: an HTTP POST of `{type, timestamp, data}` to an endpoint,
//! signed as the Standard Webhooks specification says (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`). The id is the notification's id, so a
//! redelivery carries the same id and receivers can drop duplicates.
//!
//! Unless private targets are allowed, a request never reaches a loopback,
//! private, link-local or otherwise special-purpose address (every range of the
//! IANA special-purpose registries, see [`is_public`]): IP literals are checked
//! before sending, and host names go through [`GuardedResolver`], which drops such
//! addresses at connect time (so a DNS answer cannot rebind past the check). The
//! client ignores proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`): a
//! proxy would resolve names itself, past the guard. Of an error response, at most
//! [`MAX_ERROR_EXCERPT`] bytes are read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// IPv4 ranges of the IANA IPv4 Special-Purpose Address Registry, and multicast
/// (224.0.0.0/4). Webhooks never go there, even where the registry calls a range
/// globally reachable (anycast services are not webhook receivers).
const V4_SPECIAL: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),          // "this network" (RFC 791)
    (Ipv4Addr::new(10, 0, 0, 0), 8),         // private (RFC 1918)
    (Ipv4Addr::new(100, 64, 0, 0), 10),      // shared address space (RFC 6598)
    (Ipv4Addr::new(127, 0, 0, 0), 8),        // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),     // link-local (cloud metadata)
    (Ipv4Addr::new(172, 16, 0, 0), 12),      // private (RFC 1918)
    (Ipv4Addr::new(192, 0, 0, 0), 24),       // IETF protocol assignments (RFC 6890, incl. DS-Lite, PCP, TURN)
    (Ipv4Addr::new(192, 0, 2, 0), 24),       // documentation TEST-NET-1
    (Ipv4Addr::new(192, 31, 196, 0), 24),    // AS112-v4 (RFC 7535)
    (Ipv4Addr::new(192, 52, 193, 0), 24),    // AMT (RFC 7450)
    (Ipv4Addr::new(192, 88, 99, 0), 24),     // deprecated 6to4 relay anycast (RFC 7526)
    (Ipv4Addr::new(192, 168, 0, 0), 16),     // private (RFC 1918)
    (Ipv4Addr::new(192, 175, 48, 0), 24),    // direct delegation AS112 (RFC 7534)
    (Ipv4Addr::new(198, 18, 0, 0), 15),      // benchmarking (RFC 2544)
    (Ipv4Addr::new(198, 51, 100, 0), 24),    // documentation TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24),     // documentation TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4),        // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),        // reserved (RFC 1112)
    (Ipv4Addr::new(255, 255, 255, 255), 32), // limited broadcast
];

/// IPv6 ranges of the IANA IPv6 Special-Purpose Address Registry, plus the
/// deprecated IPv4-compatible (::/96) and site-local (fec0::/10) space and
/// multicast. IPv4-mapped addresses (::ffff:0:0/96) are judged as the IPv4
/// address inside; anything outside 2000::/3 (the only global unicast space
/// IANA allocates) is refused too.
const V6_SPECIAL: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // IPv4-compatible, ::, ::1 (RFC 4291)
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96), // IPv4-mapped (when not unwrapped)
    (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96), // IPv4-translated (RFC 2765)
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96), // NAT64 well-known prefix (RFC 6052)
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64 (RFC 8215)
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only (RFC 6666)
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64), // dummy prefix (RFC 9780)
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments (TEREDO, ORCHID, ...)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation (RFC 3849)
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4 (RFC 3056)
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48), // direct delegation AS112 (RFC 7534)
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation (RFC 9637)
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16), // segment routing SIDs (RFC 9602)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local (RFC 4193)
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local, deprecated (RFC 3879)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// Whether an address is reachable from the public internet: in none of the
/// special-purpose ranges of the IANA registries ([`V4_SPECIAL`], [`V6_SPECIAL`]).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !V4_SPECIAL.iter().any(|r| in_v4(v4, *r)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let global_unicast = in_v6(v6, (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3));
            global_unicast && !V6_SPECIAL.iter().any(|r| in_v6(v6, *r))
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
            .tcp_nodelay(true)
            // a proxy resolves the target itself, past the guarded resolver
            .no_proxy();
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

/// Bytes of an error response's body read at most (for the attempt's error).
pub const MAX_ERROR_EXCERPT: usize = 512;

/// The first `max` bytes of a response body, read chunk by chunk (the rest is
/// never read: the connection is dropped with it), waiting `wait` at most.
pub async fn read_prefix(resp: &mut reqwest::Response, max: usize, wait: Duration) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(max.min(4096));
    let read = async {
        while prefix.len() < max {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(max - prefix.len());
                    prefix.extend_from_slice(&chunk[..take]);
                }
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    prefix
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
                    let mut resp = resp;
                    let prefix = read_prefix(&mut resp, MAX_ERROR_EXCERPT, Duration::from_secs(2)).await;
                    String::from_utf8_lossy(&prefix).into_owned()
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

    /// Every special-purpose range, by its first and last address (written out, not
    /// derived from the table), with public neighbours where there are any.
    #[test]
    fn every_special_purpose_range_is_refused() {
        let refused: &[(&str, &str, &str)] = &[
            ("0.0.0.0/8", "0.0.0.0", "0.255.255.255"),
            ("10.0.0.0/8", "10.0.0.0", "10.255.255.255"),
            ("100.64.0.0/10", "100.64.0.0", "100.127.255.255"),
            ("127.0.0.0/8", "127.0.0.0", "127.255.255.255"),
            ("169.254.0.0/16", "169.254.0.0", "169.254.255.255"),
            ("172.16.0.0/12", "172.16.0.0", "172.31.255.255"),
            ("192.0.0.0/24", "192.0.0.0", "192.0.0.255"),
            ("192.0.2.0/24", "192.0.2.0", "192.0.2.255"),
            ("192.31.196.0/24", "192.31.196.0", "192.31.196.255"),
            ("192.52.193.0/24", "192.52.193.0", "192.52.193.255"),
            ("192.88.99.0/24", "192.88.99.0", "192.88.99.255"),
            ("192.168.0.0/16", "192.168.0.0", "192.168.255.255"),
            ("192.175.48.0/24", "192.175.48.0", "192.175.48.255"),
            ("198.18.0.0/15", "198.18.0.0", "198.19.255.255"),
            ("198.51.100.0/24", "198.51.100.0", "198.51.100.255"),
            ("203.0.113.0/24", "203.0.113.0", "203.0.113.255"),
            ("224.0.0.0/4", "224.0.0.0", "239.255.255.255"),
            ("240.0.0.0/4", "240.0.0.0", "255.255.255.254"),
            ("255.255.255.255/32", "255.255.255.255", "255.255.255.255"),
            ("::/96", "::", "::ffff:ffff"),
            ("::1/128", "::1", "::1"),
            ("::ffff:0:0/96 (as 127.0.0.1)", "::ffff:127.0.0.1", "::ffff:10.255.255.255"),
            ("::ffff:0:0/96 (as 169.254.169.254)", "::ffff:169.254.169.254", "::ffff:198.18.0.1"),
            ("::ffff:0:0:0/96", "::ffff:0:0:0", "::ffff:0:ffff:ffff"),
            ("64:ff9b::/96", "64:ff9b::", "64:ff9b::ffff:ffff"),
            ("64:ff9b:1::/48", "64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"),
            ("100::/64", "100::", "100::ffff:ffff:ffff:ffff"),
            ("100:0:0:1::/64", "100:0:0:1::", "100:0:0:1:ffff:ffff:ffff:ffff"),
            ("2001::/23", "2001::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("2001::/32 TEREDO", "2001::1", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("2002::/16", "2002::", "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("2620:4f:8000::/48", "2620:4f:8000::", "2620:4f:8000:ffff:ffff:ffff:ffff:ffff"),
            ("3fff::/20", "3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("5f00::/16", "5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("fc00::/7", "fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("fe80::/10", "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("fec0::/10", "fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("ff00::/8", "ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("outside 2000::/3", "4000::1", "1234::1"),
        ];
        for (range, first, last) in refused {
            for ip in [first, last] {
                assert!(!is_public(ip.parse().unwrap()), "{ip} of {range} is special-purpose");
            }
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "203.0.112.255",
            "223.255.255.255",
            "93.184.216.34",
            "::ffff:93.184.216.34",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2003::1",
            "2606:4700::1111",
            "2620:4f:7fff::1",
            "2620:4f:8001::1",
            "3ffe:ffff::1",
            "3fff:1000::1",
        ];
        for ip in public {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    /// A raw HTTP server that answers 500 with a 10 MB body and counts what it wrote.
    #[tokio::test]
    async fn error_bodies_are_read_up_to_512_bytes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const TEN_MB: usize = 10 * 1024 * 1024;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn({
            let written = written.clone();
            async move {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                let head = format!("HTTP/1.1 500 Internal Server Error\r\ncontent-length: {TEN_MB}\r\n\r\n");
                conn.write_all(head.as_bytes()).await.unwrap();
                let chunk = vec![b'e'; 16 * 1024];
                while written.load(Ordering::SeqCst) < TEN_MB {
                    if conn.write_all(&chunk).await.is_err() {
                        break;
                    }
                    written.fetch_add(chunk.len(), Ordering::SeqCst);
                }
            }
        });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut resp = client.post(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(resp.status(), 500);
        let prefix = read_prefix(&mut resp, MAX_ERROR_EXCERPT, Duration::from_secs(2)).await;
        assert_eq!(prefix, vec![b'e'; 512]);
        let at_return = written.load(Ordering::SeqCst);
        assert!(at_return < TEN_MB / 2, "the body was not buffered ({at_return} bytes written)");
        drop(resp);
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("the server saw the connection end").unwrap();
        assert!(written.load(Ordering::SeqCst) < TEN_MB, "the rest was never read");
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
