//! The `huddle` client commands end to end against a real `huddle serve`.

use std::time::Duration;

use crate::common::{Data, collect_lines, huddle, run, s, stdout_lines, wait_timeout};

#[test]
fn room_lifecycle_through_the_cli() {
    let data = Data::new();
    let node = data.start();

    // Entity and room.
    let entity = node.cli(&["entity", "create", "--name", "Acme", "--type", "company", "--json"]).json();
    let entity_id = s(&entity, "id").to_string();
    assert_eq!(s(&entity, "name"), "Acme");
    assert_eq!(entity["active"], true);
    assert!(s(&entity, "created_at").ends_with('Z'), "{entity}");

    let dept = node
        .cli(&[
            "department",
            "create",
            "--entity",
            &entity_id,
            "--name",
            "Eng",
            "--instructions",
            "Be precise.",
            "--json",
        ])
        .json();
    let dept_id = s(&dept, "id").to_string();
    let depts = node.cli(&["department", "list", "--entity", &entity_id]).ok().to_string();
    assert!(depts.starts_with("ID") && depts.contains(&dept_id) && depts.contains("Eng"), "{depts}");

    let room = node
        .cli(&[
            "room",
            "create",
            "--entity",
            &entity_id,
            "--title",
            "Standup",
            "--department",
            &dept_id,
            "--instructions",
            "Take notes.",
            "--json",
        ])
        .json();
    let room_id = s(&room, "id").to_string();
    assert_eq!(s(&room, "status"), "SCHEDULED");
    assert_eq!(s(&room, "effective_instructions"), "Be precise.\n\nTake notes.");

    // Start (human output), join two, one leaves.
    let started = node.cli(&["room", "start", &room_id]).ok().to_string();
    assert!(started.contains("status:") && started.contains("ACTIVE"), "{started}");

    let ada = node.cli(&["room", "join", &room_id, "--name", "Ada", "--email", "ada@example.com", "--json"]).json();
    assert_eq!(s(&ada, "kind"), "HUMAN");
    assert_eq!(ada["left_at"], serde_json::Value::Null);
    let bot = node.cli(&["room", "join", &room_id, "--name", "Notetaker", "--kind", "agent", "--json"]).json();
    assert_eq!(s(&bot, "kind"), "AGENT");
    let left = node.cli(&["room", "leave", &room_id, "--participant", s(&ada, "id"), "--json"]).json();
    assert_eq!(s(&left, "id"), s(&ada, "id"));
    assert!(left["left_at"].is_string(), "{left}");

    // Get, human and JSON.
    let text = node.cli(&["room", "get", &room_id]).ok().to_string();
    for want in [&room_id, "Standup", "ACTIVE", "Ada", "Notetaker", "AGENT", "1 present, 2 in total"] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
    let got = node.cli(&["room", "get", &room_id, "--json"]).json();
    assert_eq!(s(&got, "status"), "ACTIVE");
    let participants = got["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 2, "{got}");
    let present: Vec<_> = participants.iter().filter(|p| p["left_at"].is_null()).collect();
    assert_eq!(present.len(), 1);
    assert_eq!(s(present[0], "display_name"), "Notetaker");
    // created, started, joined, joined, left
    assert!(got["event_seq"].as_u64().unwrap() >= 5, "{got}");

    // List, human and JSON.
    let table = node.cli(&["room", "list", "--entity", &entity_id]).ok().to_string();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{table}");
    assert!(lines.any(|l| l.starts_with(&room_id) && l.contains("ACTIVE") && l.contains("Standup")), "{table}");
    let listed = node.cli(&["room", "list", "--status", "active", "--json"]).json_lines();
    assert!(listed.iter().any(|r| s(r, "id") == room_id), "{listed:?}");
    let entities = node.cli(&["entity", "list"]).ok().to_string();
    assert!(entities.contains(&entity_id) && entities.contains("Acme"), "{entities}");

    // End; then an illegal transition and an unknown id.
    let ended = node.cli(&["room", "end", &room_id, "--json"]).json();
    assert_eq!(s(&ended, "status"), "COMPLETED");
    assert!(ended["ended_at"].is_string());

    let err = node.cli(&["room", "start", &room_id]).err().to_string();
    assert!(err.starts_with("error: FAILED_PRECONDITION: "), "{err}");
    let err = node.cli(&["room", "get", "no-such-room"]).err().to_string();
    assert!(err.starts_with("error: NOT_FOUND: ") && err.contains("no-such-room"), "{err}");
    let err = node.cli(&["room", "cancel", &room_id, "--reason", "too late"]).err().to_string();
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");

    // Keys: a wrong one is refused; an entity key sees its own entity.
    let err = node.cli_with_key("not-the-right-key-at-all", &["room", "list"]).err().to_string();
    assert!(err.starts_with("error: UNAUTHENTICATED: "), "{err}");
    let created = node.cli(&["entity", "create-key", &entity_id, "--json"]).json();
    let secret = s(&created, "secret").to_string();
    assert_eq!(s(&created["api_key"], "entity_id"), entity_id);
    let own = node.cli_with_key(&secret, &["room", "list", "--json"]).json_lines();
    assert!(own.iter().all(|r| s(r, "entity_id") == entity_id) && !own.is_empty(), "{own:?}");
    let err = node.cli_with_key(&secret, &["entity", "create", "--name", "Nope"]).err().to_string();
    assert!(err.starts_with("error: PERMISSION_DENIED: "), "{err}");

    // Update.
    let updated =
        node.cli(&["entity", "update", &entity_id, "--max-participants", "7", "--active", "false", "--json"]).json();
    assert_eq!(updated["max_participants"], 7);
    assert_eq!(updated["active"], false);
    assert_eq!(s(&updated, "name"), "Acme");
}

#[test]
fn watch_prints_events_until_the_room_ends() {
    let data = Data::new();
    let node = data.start();
    let entity = node.cli(&["entity", "create", "--name", "Watchers", "--json"]).json();
    let room = node.cli(&["room", "create", "--entity", s(&entity, "id"), "--title", "Live", "--json"]).json();
    let room_id = s(&room, "id").to_string();
    node.cli(&["room", "start", &room_id]).ok();

    let mut watcher = node.cli_spawn(&["room", "watch", &room_id, "--json"]);
    let lines = stdout_lines(&mut watcher);
    // Make events only once the watcher has its snapshot.
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("a snapshot line within 20s");
    node.cli(&["room", "join", &room_id, "--name", "Grace"]).ok();
    node.cli(&["room", "end", &room_id]).ok();

    let rest = collect_lines(&lines, Duration::from_secs(20));
    let status = wait_timeout(&mut watcher, Duration::from_secs(10)).expect("watch exits when its output ends");
    assert!(status.success(), "watch failed ({status})");
    let events: Vec<serde_json::Value> =
        std::iter::once(&first).chain(&rest).map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(s(&events[0], "type"), "snapshot", "{first}");
    assert_eq!(s(&events[0]["snapshot"], "id"), room_id);
    assert_eq!(s(&events[0]["snapshot"], "status"), "ACTIVE");
    let types: Vec<&str> = events.iter().map(|e| s(e, "type")).collect();
    // Ending the room also marks Grace as left (participant_left) before `completed`.
    assert_eq!(types[..2], ["snapshot", "participant_joined"], "{rest:?}");
    assert_eq!(types.last(), Some(&"completed"), "{rest:?}");
    let snapshot_seq = events[0]["seq"].as_u64().unwrap();
    assert_eq!(events[1]["seq"].as_u64(), Some(snapshot_seq + 1));
    let seqs: Vec<u64> = events.iter().skip(1).map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap or disorder in {seqs:?}");
    // The human form names each event.
    let text = node.cli(&["room", "watch", &room_id]).ok().to_string();
    assert!(text.contains("snapshot:") && text.contains("COMPLETED"), "{text}");
}

#[test]
fn client_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();

    // No key anywhere.
    let r = run(huddle(dir.path()).args(["room", "list"]));
    assert_eq!(r.status.code(), Some(1));
    assert!(r.stderr.contains("no API key: pass --key or set HUDDLE_KEY"), "{}", r.stderr);

    // A server that is not there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let r = run(huddle(dir.path()).args(["entity", "list", "--server", &url, "--key", "k"]));
    assert_eq!(r.status.code(), Some(1));
    assert!(r.stderr.starts_with("error: ") && r.stderr.contains(&url), "{}", r.stderr);

    // The key file `huddle serve` writes is picked up from the current directory.
    std::fs::write(dir.path().join("huddle.admin-key"), "from-the-file\n").unwrap();
    let r = run(huddle(dir.path()).args(["entity", "list", "--server", &url]));
    assert!(!r.stderr.contains("no API key"), "{}", r.stderr);
}

#[test]
fn help_explains_commands() {
    let dir = tempfile::tempdir().unwrap();
    let top = run(huddle(dir.path()).arg("--help"));
    let top = top.ok();
    for want in ["Quick start", "serve", "entity", "room", "department"] {
        assert!(top.contains(want), "`{want}` missing from --help:\n{top}");
    }
    let join = run(huddle(dir.path()).args(["room", "join", "--help"]));
    for want in ["--name", "--kind", "--identity", "--server", "--key", "--json"] {
        assert!(join.ok().contains(want), "`{want}` missing from room join --help:\n{}", join.stdout);
    }
    let serve = run(huddle(dir.path()).args(["serve", "--help"]));
    for want in ["--listen", "--http", "--database", "--admin-key", "--config", "--log-format", "HUDDLE__"] {
        assert!(serve.ok().contains(want), "`{want}` missing from serve --help:\n{}", serve.stdout);
    }
}

#[test]
fn models_commands_run_locally_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| huddle(dir.path()).args(args).arg("--models-dir").arg(dir.path()).output().unwrap();
    let out = run(&["models", "list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no models installed"));
    let out = run(&["models", "list", "--json"]);
    assert!(out.status.success() && out.stdout.is_empty());
    let out = run(&["models", "fetch", "--whisper", "large"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected tiny.en or base"));
    let out = run(&["models", "fetch", "--quantize", "q4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected f16 or q8_0"));
}

#[test]
fn api_keys_are_listed_and_revoked_through_the_cli() {
    let data = Data::new();
    let node = data.start();
    let entity = node.cli(&["entity", "create", "--name", "Keyed", "--json"]).json();
    let entity_id = s(&entity, "id").to_string();
    let created = node.cli(&["entity", "create-key", &entity_id, "--json"]).json();
    let secret = s(&created, "secret").to_string();
    let key_id = s(&created["api_key"], "id").to_string();
    node.cli_with_key(&secret, &["entity", "get", &entity_id]).ok();

    let table = node.cli(&["entity", "keys", &entity_id]).ok().to_string();
    assert!(table.starts_with("ID") && table.contains(&key_id) && table.contains(&secret[..10]), "{table}");
    assert!(!table.contains(&secret), "{table}");
    let listed = node.cli(&["entity", "keys", &entity_id, "--json"]).json_lines();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(s(&listed[0], "id"), key_id);
    assert!(listed[0]["revoked_at"].is_null() && listed[0].get("secret").is_none(), "{listed:?}");

    let revoked = node.cli(&["entity", "revoke-key", &key_id, "--json"]).json();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let err = node.cli_with_key(&secret, &["entity", "get", &entity_id]).err().to_string();
    assert!(err.starts_with("error: UNAUTHENTICATED: "), "{err}");
    let err = node.cli(&["entity", "revoke-key", "no-such-key"]).err().to_string();
    assert!(err.starts_with("error: NOT_FOUND: "), "{err}");
}
