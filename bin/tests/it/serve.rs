//! `huddle serve` as an operator sees it: config layering, bad config,
//! signals, `/healthz` and `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::{Data, collect_lines, huddle, output_timeout, run, s, stdout_lines, wait_timeout};

/// `GET path` over HTTP/1.0: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP listener");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the HTTP response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    (code.unwrap_or_else(|| panic!("no status line in {raw:?}")), body.to_string())
}

#[test]
fn healthz_and_metrics() {
    let data = Data::new();
    let node = data.start();
    node.cli(&["entity", "list"]).ok();

    let (code, body) = http_get(node.http, "/healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(node.http, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.lines().any(|l| l.starts_with("huddle_")), "no huddle_ metric in:\n{body}");
    let (code, _) = http_get(node.http, "/no-such-page");
    assert_eq!(code, 404);
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for (name, sig) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
        let data = Data::new();
        let mut node = data.start();
        // A live room with a participant and a watcher, so there is
        // something to drain and a stream to end.
        let entity = node.cli(&["entity", "create", "--name", "Shutdown", "--json"]).json();
        let room = node.cli(&["room", "create", "--entity", s(&entity, "id"), "--title", "t", "--json"]).json();
        let room_id = s(&room, "id").to_string();
        node.cli(&["room", "start", &room_id]).ok();
        node.cli(&["room", "join", &room_id, "--name", "Ada"]).ok();
        let mut watcher = node.cli_spawn(&["room", "watch", &room_id]);
        let lines = stdout_lines(&mut watcher);
        let first = lines.recv_timeout(Duration::from_secs(20)).expect("a snapshot line within 20s");
        assert!(first.contains("snapshot:"), "{first}");

        node.signal(sig);
        let status = node.wait_exit(Duration::from_secs(15));
        let status = status.unwrap_or_else(|| panic!("{name}: still running after 15s\n{}", node.logs()));
        assert_eq!(status.code(), Some(0), "{name}: exit {status}\n{}", node.logs());
        collect_lines(&lines, Duration::from_secs(10));
        let watch_status = wait_timeout(&mut watcher, Duration::from_secs(10));
        assert!(watch_status.is_some(), "{name}: the watcher did not end with the server");

        // The room is intact on the next start.
        let node = data.start();
        let got = node.cli(&["room", "get", &room_id, "--json"]).json();
        assert_eq!(s(&got, "status"), "ACTIVE", "{name}");
        assert_eq!(got["participants"].as_array().unwrap().len(), 1, "{name}");
    }
}

#[test]
fn config_layers_file_then_env_then_flags() {
    let data = Data::new();
    let dir = data.path();
    let file_db = dir.join("from-file.db");
    let env_db = dir.join("from-env.db");
    std::fs::write(
        dir.join("custom.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin_key = \"{}\"\n\n[database]\nurl = \"sqlite://{}\"\n\n[log]\nformat = \"text\"\n",
            data.key,
            file_db.display()
        ),
    )
    .unwrap();
    let env_url = format!("sqlite://{}", env_db.display());
    let node =
        data.start_with(&["--config", "custom.toml", "--log-format", "json"], &[("HUDDLE__DATABASE__URL", &env_url)]);
    // The key came from the file, the database from the environment.
    node.cli(&["entity", "create", "--name", "Layered"]).ok();
    assert!(env_db.exists(), "HUDDLE__DATABASE__URL not applied");
    assert!(!file_db.exists(), "the environment must beat the file");
    // --log-format beat log.format from the file.
    let logs = node.logs();
    let first = logs.lines().next().unwrap_or_else(|| panic!("no logs"));
    serde_json::from_str::<serde_json::Value>(first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    drop(node);

    // A flag beats the environment.
    let flag_db = dir.join("from-flag.db");
    let flag_url = format!("sqlite://{}", flag_db.display());
    let node =
        data.start_with(&["--config", "custom.toml", "--database", &flag_url], &[("HUDDLE__DATABASE__URL", &env_url)]);
    node.cli(&["entity", "create", "--name", "Flagged"]).ok();
    assert!(flag_db.exists(), "--database not applied");
}

#[test]
fn bad_config_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    struct Case {
        args: &'static [&'static str],
        envs: &'static [(&'static str, &'static str)],
        want: &'static str,
    }
    let cases = [
        Case { args: &["--admin-key", "short"], envs: &[], want: "admin_key" },
        Case { args: &["--database", "mysql://nope"], envs: &[], want: "database.url" },
        Case { args: &["--config", "missing.toml"], envs: &[], want: "missing.toml" },
        Case { args: &[], envs: &[("HUDDLE__ROOMS__WATCH_BUFFER", "0")], want: "watch_buffer" },
        Case { args: &[], envs: &[("HUDDLE__NOTIFY__YIELD_TO_REQUESTS_MS", "5000")], want: "yield_to_requests_ms" },
    ];
    for Case { args, envs, want } in cases {
        let child = huddle(dir.path())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (status, stdout, stderr) = output_timeout(child, Duration::from_secs(20));
        let status = status.unwrap_or_else(|| panic!("{args:?}: huddle serve kept running on bad config"));
        assert_eq!(status.code(), Some(2), "{args:?} {envs:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(want), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
    // A usage error is clap's exit 2 too.
    let r = run(huddle(dir.path()).args(["serve", "--listen", "not-an-address"]));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
}

#[test]
fn generated_admin_key_is_used_by_clients_in_the_same_directory() {
    let data = Data::new();
    let db = data.db_url();
    let node = data.start_with(&["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--database", &db], &[]);
    let key_file = data.path().join("huddle.admin-key");
    let key = std::fs::read_to_string(&key_file).expect("huddle serve wrote ./huddle.admin-key");
    assert!(key.trim().len() >= 16, "{key:?}");
    assert!(node.logs().contains("huddle.admin-key"), "the log should say where the key is:\n{}", node.logs());
    // No --key: the client reads ./huddle.admin-key.
    let url = node.url();
    let r = run(huddle(data.path()).args(["entity", "create", "--name", "Keyless", "--json", "--server", &url]));
    assert_eq!(s(&r.json(), "name"), "Keyless");
}
