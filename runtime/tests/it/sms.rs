//! SMS through Twilio's Messages API. Twilio cannot run here, so the peer is
//! `TwilioMessagesTestDouble`: a loopback server that follows Twilio's published
//! API (basic auth with the account SID and auth token, form-encoded `To`, `From`,
//! `Body`, `StatusCallback`; 201 with a message `sid`; 400 with Twilio's error JSON
//! for an invalid number) and then reports the delivery status to the callback URL,
//! signed with `X-Twilio-Signature` as Twilio documents it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use huddle_actors::notify::sms::twilio_signature;
use huddle_core::{Channel, NotificationStatus as S};
use huddle_runtime::server::Server;
use huddle_runtime::{ApiError, Config, SendRequest};
use tokio_util::sync::CancellationToken;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-for-tests";
/// Twilio's magic test number for "invalid To".
const INVALID: &str = "+15005550001";
/// A number the test double reports as undelivered.
const UNREACHABLE: &str = "+15005550009";

/// One message's form fields.
type Form = Vec<(String, String)>;

#[derive(Clone, Default)]
struct TwilioMessagesTestDouble {
    messages: Arc<Mutex<Vec<Form>>>,
}

async fn create_message(
    State(twilio): State<TwilioMessagesTestDouble>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}")));
    if account != SID || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        let err = serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401});
        return (StatusCode::UNAUTHORIZED, axum::Json(err)).into_response();
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let to = get("To").unwrap_or_default();
    if to == INVALID {
        let err = serde_json::json!({"code": 21211, "message": format!("The 'To' number {to} is not a valid phone number."), "status": 400});
        return (StatusCode::BAD_REQUEST, axum::Json(err)).into_response();
    }
    let n = {
        let mut m = twilio.messages.lock().unwrap();
        m.push(form.clone());
        m.len()
    };
    let sid = format!("SM{n:032}");
    if let Some(cb) = get("StatusCallback") {
        let status = if to == UNREACHABLE { "undelivered" } else { "delivered" };
        let mut params = vec![
            ("AccountSid".to_string(), SID.to_string()),
            ("MessageSid".to_string(), sid.clone()),
            ("MessageStatus".to_string(), status.to_string()),
        ];
        if status == "undelivered" {
            params.push(("ErrorCode".to_string(), "30003".to_string()));
        }
        let signature = twilio_signature(TOKEN, &cb, &params);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let client = reqwest::Client::new();
            let _ = client.post(&cb).header("x-twilio-signature", signature).form(&params).send().await;
        });
    }
    let ok = serde_json::json!({"sid": sid, "status": "queued", "to": to, "from": get("From"), "body": get("Body")});
    (StatusCode::CREATED, axum::Json(ok)).into_response()
}

async fn twilio() -> (TwilioMessagesTestDouble, String) {
    let t = TwilioMessagesTestDouble::default();
    let app = axum::Router::new()
        .route("/2010-04-01/Accounts/{account}/Messages.json", axum::routing::post(create_message))
        .with_state(t.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (t, base)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_goes_through_twilio_and_status_callbacks_update_it() {
    let (double, base) = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http = format!("127.0.0.1:{http_port}").parse().unwrap();
    config.server.admin_key = Some("test-admin-key-0123456789abcdef".into());
    config.database.url = format!("sqlite://{}", dir.path().join("sms.db").display());
    config.notify.poll_interval_ms = 20;
    config.notify.twilio.account_sid = Some(SID.into());
    config.notify.twilio.auth_token = Some(TOKEN.into());
    config.notify.twilio.from = Some("+15005550006".into());
    config.notify.twilio.base_url = base;
    let callback = format!("http://127.0.0.1:{http_port}/webhooks/twilio/status");
    config.notify.twilio.status_callback_url = Some(callback.clone());
    let server = Server::bind(config).await.unwrap();
    let rt = server.runtime().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    let api = rt.admin();
    let e = crate::common::entity(&api, "Acme", None).await;
    let sms = |to: &str, text: &str| SendRequest {
        entity_id: e.id.clone(),
        channel: Some(Channel::Sms),
        recipients: vec![to.into()],
        text: Some(text.into()),
        ..Default::default()
    };

    let ok = api.send_notification(sms("+4915112345678", "Weekly sync starts in 5 minutes")).await.unwrap();
    assert!(ok.warnings.is_empty());
    let long =
        api.send_notification(sms(UNREACHABLE, &"Agenda: refunds, onboarding, security. ".repeat(6))).await.unwrap();
    assert_eq!(long.warnings.len(), 1, "a 2-segment text is flagged");
    assert!(long.warnings[0].contains("2 SMS segments"), "{:?}", long.warnings);
    let bad = api.send_notification(sms(INVALID, "hi")).await.unwrap();

    let wait = |id: String, want: S| {
        let api = api.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let n = api.get_notification(&id).await.unwrap();
                if n.status == want {
                    return n;
                }
                assert!(tokio::time::Instant::now() < deadline, "{id} is {} not {want}: {n:?}", n.status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let n = wait(ok.ids[0].clone(), S::Delivered).await;
    assert!(n.provider_id.as_deref().unwrap().starts_with("SM"));
    assert_eq!(n.attempts[0].response_code, Some(201));
    let sent = double.messages.lock().unwrap()[0].clone();
    let field = |k: &str| sent.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(field("To"), "+4915112345678");
    assert_eq!(field("From"), "+15005550006");
    assert_eq!(field("Body"), "Weekly sync starts in 5 minutes");
    assert_eq!(field("StatusCallback"), callback);

    // accepted by Twilio, then reported undelivered through the signed callback
    let n = wait(long.ids[0].clone(), S::Failed).await;
    assert!(n.last_error.unwrap().contains("undelivered (error code 30003)"));
    // Twilio's 400 with its error JSON fails at once, without retries
    let n = wait(bad.ids[0].clone(), S::Failed).await;
    assert_eq!(n.attempts.len(), 1);
    assert!(n.last_error.unwrap().contains("21211"));

    // a forged callback is refused
    let forged = reqwest::Client::new()
        .post(&callback)
        .header("x-twilio-signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .form(&[("MessageSid", n.provider_id.clone().unwrap_or_default()), ("MessageStatus", "delivered".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // SMS needs an E.164 number
    let err = api.send_notification(sms("0151 12345", "hi")).await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidArgument { .. }), "{err}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_twilio_leaves_the_account_sid_out_of_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.admin_key = Some("test-admin-key-0123456789abcdef".into());
    config.database.url = format!("sqlite://{}", dir.path().join("sms-down.db").display());
    config.notify.poll_interval_ms = 20;
    config.notify.twilio.account_sid = Some(SID.into());
    config.notify.twilio.auth_token = Some(TOKEN.into());
    config.notify.twilio.from = Some("+15005550006".into());
    // Nothing listens there: every attempt fails to connect.
    config.notify.twilio.base_url = format!("http://127.0.0.1:{}", free_port());
    let server = Server::bind(config).await.unwrap();
    let rt = server.runtime().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    let api = rt.admin();
    let e = crate::common::entity(&api, "Acme", None).await;
    let sent = api
        .send_notification(SendRequest {
            entity_id: e.id.clone(),
            channel: Some(Channel::Sms),
            recipients: vec!["+4915112345678".into()],
            text: Some("hi".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let error = loop {
        let n = api.get_notification(&sent.ids[0]).await.unwrap();
        if let Some(error) = n.last_error {
            break error;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt within 10 s: {n:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.contains("cannot reach Twilio"), "{error}");
    assert!(!error.contains(SID) && !error.contains(TOKEN), "last_error shows the account: {error}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}
