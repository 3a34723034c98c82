//! LiveKit through the `huddle` binary, checked by LiveKit's own Python server
//! SDK (`livekit-api`): its TokenVerifier accepts the tokens huddle mints (from
//! `huddle livekit token` and from `room join` on a LiveKit-backed room), and
//! webhooks it signs as a LiveKit server does drive the bound room through its
//! lifecycle, while a forged one is refused.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{Data, huddle, run, s, venv_python};

const KEY: &str = "APIpeercheck";
const SECRET: &str = "python-peer-secret-0123456789abcdef";

fn peer() -> (std::path::PathBuf, std::path::PathBuf) {
    let python = venv_python("huddle-py-livekit", &["livekit-api==1.2.2"], "import livekit.api");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/livekit_peer.py");
    (python, script)
}

fn verify(python: &Path, script: &Path, token: &str) -> Value {
    let out = Command::new(python)
        .arg(script)
        .args(["verify", token])
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "livekit-api refused the token: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn livekit_api_python_verifies_huddle_tokens() {
    let (python, script) = peer();
    let data = Data::new();
    let out = run(huddle(data.path())
        .args(["livekit", "token", "--room", "standup", "--identity", "ada", "--name", "Ada", "--ttl", "2h"])
        .args(["--url", "https://lk.example.com", "--api-key", KEY, "--api-secret", SECRET, "--json"]))
    .json();
    assert_eq!(s(&out, "url"), "wss://lk.example.com");
    let claims = verify(&python, &script, s(&out, "token"));
    assert_eq!(claims["identity"], "ada");
    assert_eq!(claims["name"], "Ada");
    assert_eq!(claims["video"]["room"], "standup");
    assert_eq!(claims["video"]["room_join"], true);
    assert_eq!(claims["video"]["can_subscribe"], true);
    assert_eq!(claims["ttl"], 7200);

    // the same from LiveKit's usual environment variables; a bare token by default
    let bare = run(huddle(data.path())
        .args(["livekit", "token", "--room", "r", "--identity", "bo"])
        .env("LIVEKIT_URL", "ws://127.0.0.1:7880")
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET));
    let token = bare.ok().trim().to_string();
    assert_eq!(token.matches('.').count(), 2, "a JWT: {token}");
    assert_eq!(verify(&python, &script, &token)["ttl"], 6 * 3600);

    // without keys it says what to set, and exits 2 (`huddle` drops the caller's HUDDLE*
    // variables, which could configure LiveKit)
    let missing = huddle(data.path())
        .args(["livekit", "token", "--room", "r", "--identity", "bo"])
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .env_remove("LIVEKIT_URL")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--api-key"));
}

#[test]
fn livekit_api_python_webhooks_drive_the_bound_room() {
    let (python, script) = peer();
    let data = Data::new();
    let node = data.start_env(&[
        ("HUDDLE__LIVEKIT__URL", "http://127.0.0.1:7880"),
        ("HUDDLE__LIVEKIT__API_KEY", KEY),
        ("HUDDLE__LIVEKIT__API_SECRET", SECRET),
    ]);
    let entity = node.cli(&["entity", "create", "--name", "Acme", "--json"]).json();
    let entity = s(&entity, "id").to_string();
    let room = node
        .cli(&["room", "create", "--entity", &entity, "--title", "Standup", "--livekit-room", "py-standup", "--json"])
        .json();
    assert_eq!(s(&room, "livekit_room"), "py-standup");
    let room_id = s(&room, "id").to_string();

    let url = format!("http://{}/webhooks/livekit", node.http);
    let out = Command::new(&python)
        .arg(&script)
        .args(["webhooks", &url, "py-standup"])
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        codes,
        [
            "forged 401",
            "room_started 200",
            "participant_joined 200",
            "participant_joined 200",
            "participant_left 200",
            "egress_ended 200",
            "room_finished 200"
        ],
        "server log:\n{}",
        node.logs()
    );

    let got = node.cli(&["room", "get", &room_id, "--json"]).json();
    assert_eq!(s(&got, "status"), "COMPLETED");
    let people: Vec<(String, String, bool)> = got["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (s(p, "identity").to_string(), s(p, "kind").to_string(), p["left_at"].is_string()))
        .collect();
    assert_eq!(
        people,
        [("ada".to_string(), "HUMAN".to_string(), true), ("huddle-agent".to_string(), "AGENT".to_string(), true)]
    );
    let recs = node.cli(&["room", "recordings", &room_id, "--json"]).json_lines();
    assert_eq!(recs.len(), 1);
    assert_eq!(s(&recs[0], "egress_id"), "EG_py");
    assert_eq!(s(&recs[0], "status"), "EGRESS_COMPLETE");
    assert_eq!(recs[0]["locations"][0], "/recordings/meeting.ogg");

    // JoinRoom on a LiveKit-backed room hands out a token LiveKit accepts
    let retro = node
        .cli(&["room", "create", "--entity", &entity, "--title", "Retro", "--livekit-room", "py-retro", "--json"])
        .json();
    let retro = s(&retro, "id").to_string();
    node.cli(&["room", "start", &retro]).ok();
    let bo = node.cli(&["room", "join", &retro, "--name", "Bo", "--json"]).json();
    assert_eq!(s(&bo, "livekit_url"), "ws://127.0.0.1:7880");
    let identity = format!("p_{}", s(&bo, "id"));
    assert_eq!(s(&bo, "identity"), identity);
    let claims = verify(&python, &script, s(&bo, "livekit_token"));
    assert_eq!(
        (claims["identity"].as_str(), claims["video"]["room"].as_str()),
        (Some(identity.as_str()), Some("py-retro"))
    );
    // an identity of the caller's choosing is refused there: huddle assigns it
    let chosen = node.cli(&["room", "join", &retro, "--name", "Eve", "--identity", "huddle-agent"]);
    assert!(!chosen.status.success() && chosen.stderr.contains("identity"), "{}", chosen.stderr);

    // another entity cannot bind a LiveKit room name that is taken, even after its room ended
    let other = node.cli(&["entity", "create", "--name", "Globex", "--json"]).json();
    let taken =
        node.cli(&["room", "create", "--entity", s(&other, "id"), "--title", "Mine", "--livekit-room", "py-standup"]);
    assert!(!taken.status.success() && taken.stderr.contains("another entity"), "{}", taken.stderr);
}
