//! `huddle demo` (the main job) and `huddle embed`, run as a newcomer would, with the
//! real models.

use crate::common::{huddle, models_dir, run};

#[test]
fn demo_transcribes_the_meeting_and_suggests_knowledge() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(huddle(dir.path()).args(["demo", "--json", "--speed", "4", "--models-dir"]).arg(models_dir()));
    let lines: Vec<serde_json::Value> =
        out.ok().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect();
    let of = |t: &str| lines.iter().filter(|l| l["type"] == t).collect::<Vec<_>>();
    let transcript = of("transcript");
    let text = transcript.iter().map(|l| l["text"].as_str().unwrap().to_lowercase()).collect::<Vec<_>>().join(" ");
    assert!(transcript.len() >= 6, "{text}");
    for words in ["customer", "annual plan", "refund policy", "enterprise customer", "encrypted"] {
        assert!(text.contains(words), "{words:?} missing from {text:?}");
    }
    // both speakers are attributed
    assert!(transcript.iter().any(|l| l["speaker"] == "Ada") && transcript.iter().any(|l| l["speaker"] == "Ben"));
    let suggestions = of("suggestion");
    let files: Vec<&str> = suggestions.iter().map(|s| s["filename"].as_str().unwrap()).collect();
    assert!(files.contains(&"refund-policy.md"), "{suggestions:?}");
    assert!(suggestions.iter().any(|s| s["answer_to_question"] == true), "{suggestions:?}");
    let summary = of("summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["segments"].as_u64().unwrap() as usize, transcript.len());
    assert_eq!(summary[0]["suggestions"].as_u64().unwrap() as usize, suggestions.len());
}

#[test]
fn embed_prints_unit_vectors_and_reads_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(huddle(dir.path())
        .args(["embed", "--json", "Refunds take five days.", "", "--models-dir"])
        .arg(models_dir()));
    let lines: Vec<serde_json::Value> = out.ok().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], "Refunds take five days.");
    for l in &lines {
        let v: Vec<f64> = l["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(v.len(), 384);
        assert!((v.iter().map(|x| x * x).sum::<f64>().sqrt() - 1.0).abs() < 1e-4);
    }
    // texts from stdin, one per line
    let mut cmd = huddle(dir.path());
    cmd.args(["embed", "--json", "--models-dir"]).arg(models_dir()).stdin(std::process::Stdio::piped());
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"first line\nsecond line\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    // a broken model directory is a one-line error
    let broken = dir.path().join("models");
    std::fs::create_dir_all(broken.join("all-MiniLM-L6-v2")).unwrap();
    let out = run(huddle(dir.path())
        .args(["embed", "x", "--models-dir"])
        .arg(&broken)
        .env("HUDDLE_PYTHON", "/nonexistent/python"));
    assert!(!out.status.success());
    assert!(out.stderr.contains("python"), "{}", out.stderr);
}
