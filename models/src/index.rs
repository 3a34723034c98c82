//! An in-process vector index: HNSW over L2-normalised f32 embeddings, scored by cosine
//! similarity (= dot product), with metadata filters, immediate deletes and a
//! checksummed snapshot file.
//!
//! - The graph (`index/graph.rs`) is huddle's own flat HNSW: each node's vector and
//!   level-0 links in one cache-line-aligned record, the next neighbour's record
//!   prefetched while the current one is scored, a reused visited set, an f32 `1 - dot`
//!   distance by the widest kernel the CPU runs (AVX-512, AVX2 + FMA, or portable;
//!   checked once). It replaced `hnsw_rs`, which measured 0.19x hnswlib's queries/s at equal
//!   recall and 5x the raw vectors' memory here (its `DistCosine` also computes in f64,
//!   and `DistDot` asserts non-negative dot products).
//! - Deletes: HNSW graphs cannot drop nodes, so a removed item is a tombstone that every
//!   search filters out at once; [`VectorIndex::compact`] rebuilds without them, and
//!   [`VectorIndex::remove`] does that by itself when tombstones pass a quarter.
//! - Filters: by item kind, department (an item without a department matches every
//!   department: entity-wide documents are visible to all) and room. When the filtered
//!   HNSW search finds fewer than k hits, an exact scan over the matching items fills in,
//!   so a selective filter still gets k hits when k exist.
//! - Snapshot (`index/snapshot.rs`): the graph as it is in memory (levels, links, entry
//!   point, tombstones), the items' ids and filters and the vectors, checksummed with
//!   SHA-256 and written atomically; loading reads it back in large blocks with no
//!   rebuild, so searches answer exactly as before the save, and refuses a file that is
//!   truncated, corrupt, of another version or whose graph is inconsistent.

use std::collections::HashMap;

mod graph;
mod snapshot;
use graph::Graph;

/// Tombstones above this share of the graph trigger a rebuild.
const COMPACT_FRACTION: f64 = 0.25;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector has {got} dimensions, the index has {want}")]
    Dimension { got: usize, want: usize },
    #[error("vector holds a value that is not a finite number")]
    NotFinite,
    #[error("index snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
    #[error("cannot write index snapshot {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What an indexed item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// A chunk of a knowledge-base document.
    Document,
    /// A transcript segment.
    Transcript,
}

/// What filters can select an item by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemMeta {
    pub kind: Option<ItemKind>,
    pub department_id: Option<String>,
    pub room_id: Option<String>,
    pub document_id: Option<String>,
}

/// Which items a search may return; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    pub kinds: Option<Vec<ItemKind>>,
    /// Items of this department and items of no department.
    pub department_id: Option<String>,
    pub room_id: Option<String>,
}

impl SearchFilter {
    fn is_empty(&self) -> bool {
        self.kinds.is_none() && self.department_id.is_none() && self.room_id.is_none()
    }
}

/// A search result: the item's id and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: u64,
    pub score: f32,
}

/// HNSW parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    pub dim: usize,
    /// M: links per node and layer.
    pub max_connections: usize,
    pub ef_construction: usize,
    /// Default search breadth (raised to k when k is larger).
    pub ef_search: usize,
    /// Expected size, to size tables up front.
    pub capacity_hint: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig { dim: 384, max_connections: 16, ef_construction: 200, ef_search: 64, capacity_hint: 10_000 }
    }
}

/// A dot-product kernel.
type Kernel = fn(&[f32], &[f32]) -> f32;

/// The fastest dot-product kernel this CPU runs, chosen once: AVX-512, else AVX2 + FMA,
/// else eight independent accumulators the compiler vectorises for the baseline target.
fn kernel() -> Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return dot_avx512_detected;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return dot_avx2_detected;
            }
        }
        dot_portable
    })
}

/// Whether [`kernel`] is the AVX-512 one.
fn kernel_is_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::ptr::fn_addr_eq(kernel(), dot_avx512_detected as Kernel)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The dot product in f32, by the fastest kernel this CPU runs.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernel()(a, b)
}

/// [`dot_avx512`]; only [`kernel`] hands it out, after checking the CPU.
#[cfg(target_arch = "x86_64")]
fn dot_avx512_detected(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: `kernel` returns this function only when the CPU has AVX-512F.
    unsafe { dot_avx512(a, b) }
}

/// [`dot_avx2`]; only [`kernel`] hands it out, after checking the CPU.
#[cfg(target_arch = "x86_64")]
fn dot_avx2_detected(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: `kernel` returns this function only when the CPU has AVX2 and FMA.
    unsafe { dot_avx2(a, b) }
}

/// Four 16-lane accumulators over 64 values a step, then 16 a step, then the last
/// 1..15 values by a masked load.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + 16 <= n for every full 16-lane load below; the masked load
    // reads only lanes i..n.
    while i + 64 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + 16 * k;
            *acc = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(pa.add(o)) }, unsafe { _mm512_loadu_ps(pb.add(o)) }, *acc);
        }
        i += 64;
    }
    while i + 16 <= n {
        acc[1] = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(pa.add(i)) }, unsafe { _mm512_loadu_ps(pb.add(i)) }, acc[1]);
        i += 16;
    }
    if i < n {
        let mask: __mmask16 = (1u16 << (n - i)) - 1;
        let (x, y) = unsafe { (_mm512_maskz_loadu_ps(mask, pa.add(i)), _mm512_maskz_loadu_ps(mask, pb.add(i))) };
        acc[2] = _mm512_fmadd_ps(x, y, acc[2]);
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for i in 0..chunks {
        let (x, y) = (&a[i * 8..i * 8 + 8], &b[i * 8..i * 8 + 8]);
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + 8 <= n for every unaligned 8-lane load below.
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + 8 * k;
            *acc = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(pa.add(o)) }, unsafe { _mm256_loadu_ps(pb.add(o)) }, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(pa.add(i)) }, unsafe { _mm256_loadu_ps(pb.add(i)) }, acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let hi = _mm256_extractf128_ps(s, 1);
    let lo = _mm256_castps256_ps128(s);
    let q = _mm_add_ps(lo, hi);
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    let mut sum = _mm_cvtss_f32(q);
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// No string: an item without a department, room or document.
const NONE: u32 = u32::MAX;

/// Department, room and document ids stored once; items refer to them by number.
#[derive(Default)]
struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, s: Option<String>) -> u32 {
        let Some(s) = s else { return NONE };
        if let Some(&i) = self.ids.get(&s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.clone());
        self.ids.insert(s, i);
        i
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn name(&self, i: u32) -> Option<String> {
        (i != NONE).then(|| self.names[i as usize].clone())
    }
}

/// One item: its id and its filters (24 bytes; the strings live in the interner).
struct Slot {
    id: u64,
    department: u32,
    room: u32,
    document: u32,
    kind: u8,
    alive: bool,
}

fn kind_code(k: Option<ItemKind>) -> u8 {
    match k {
        None => 0,
        Some(ItemKind::Document) => 1,
        Some(ItemKind::Transcript) => 2,
    }
}

fn kind_of(code: u8) -> Option<ItemKind> {
    match code {
        1 => Some(ItemKind::Document),
        2 => Some(ItemKind::Transcript),
        _ => None,
    }
}

/// A [`SearchFilter`] resolved against the interner once per search.
struct Compiled {
    kinds: Option<Vec<u8>>,
    /// `Some(NONE)`: only items of no department (the asked one is unknown here).
    department: Option<u32>,
    /// `Some(NONE)`: nothing matches (the asked room is unknown here).
    room: Option<u32>,
}

impl Compiled {
    fn new(f: &SearchFilter, strings: &Interner) -> Compiled {
        Compiled {
            kinds: f.kinds.as_ref().map(|k| k.iter().map(|k| kind_code(Some(*k))).collect()),
            department: f.department_id.as_ref().map(|d| strings.get(d).unwrap_or(NONE)),
            room: f.room_id.as_ref().map(|r| strings.get(r).unwrap_or(NONE)),
        }
    }

    fn matches(&self, s: &Slot) -> bool {
        self.kinds.as_ref().is_none_or(|k| s.kind != 0 && k.contains(&s.kind))
            && self.department.is_none_or(|d| s.department == NONE || s.department == d)
            && self.room.is_none_or(|r| r != NONE && s.room == r)
    }
}

/// See the module docs.
pub struct VectorIndex {
    config: IndexConfig,
    /// The graph and the vectors, by internal id.
    graph: Graph,
    /// Internal id -> item.
    slots: Vec<Slot>,
    /// External id -> internal id of its live slot.
    live: HashMap<u64, usize>,
    strings: Interner,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex").field("config", &self.config).field("len", &self.live.len()).finish()
    }
}

impl VectorIndex {
    pub fn new(config: IndexConfig) -> VectorIndex {
        let graph = Graph::new(config.dim, config.max_connections, config.ef_construction, config.capacity_hint);
        VectorIndex { config, graph, slots: Vec::new(), live: HashMap::new(), strings: Interner::default() }
    }

    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Live items.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The largest live id.
    pub fn max_id(&self) -> Option<u64> {
        self.live.keys().copied().max()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.live.contains_key(&id)
    }

    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        if v.len() != self.config.dim {
            return Err(IndexError::Dimension { got: v.len(), want: self.config.dim });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(IndexError::NotFinite);
        }
        Ok(())
    }

    fn vector(&self, slot: usize) -> &[f32] {
        self.graph.vector(slot as u32)
    }

    /// Adds an item; an item with the same id is replaced.
    pub fn insert(&mut self, id: u64, vector: &[f32], meta: ItemMeta) -> Result<(), IndexError> {
        self.check(vector)?;
        if let Some(old) = self.live.remove(&id) {
            self.slots[old].alive = false;
        }
        let slot = self.graph.insert(vector) as usize;
        debug_assert_eq!(slot, self.slots.len());
        let ItemMeta { kind, department_id, room_id, document_id } = meta;
        self.slots.push(Slot {
            id,
            kind: kind_code(kind),
            department: self.strings.intern(department_id),
            room: self.strings.intern(room_id),
            document: self.strings.intern(document_id),
            alive: true,
        });
        self.live.insert(id, slot);
        Ok(())
    }

    fn meta(&self, s: &Slot) -> ItemMeta {
        ItemMeta {
            kind: kind_of(s.kind),
            department_id: self.strings.name(s.department),
            room_id: self.strings.name(s.room),
            document_id: self.strings.name(s.document),
        }
    }

    /// Adds many items (all are checked before any is added).
    pub fn insert_batch(&mut self, items: Vec<(u64, Vec<f32>, ItemMeta)>) -> Result<(), IndexError> {
        for (_, v, _) in &items {
            self.check(v)?;
        }
        self.graph.reserve(items.len());
        self.slots.reserve_exact(items.len());
        for (id, v, meta) in items {
            self.insert(id, &v, meta)?;
        }
        Ok(())
    }

    /// Removes an item; searches stop returning it at once.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.live.remove(&id) else { return false };
        self.slots[slot].alive = false;
        let dead = self.slots.len() - self.live.len();
        if dead as f64 > COMPACT_FRACTION * self.slots.len() as f64 && self.slots.len() > 64 {
            self.compact();
        }
        true
    }

    /// Rebuilds the graph without removed items.
    pub fn compact(&mut self) {
        let items: Vec<(u64, Vec<f32>, ItemMeta)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.alive)
            .map(|(i, s)| (s.id, self.vector(i).to_vec(), self.meta(s)))
            .collect();
        let mut fresh = VectorIndex::new(IndexConfig { capacity_hint: items.len(), ..self.config });
        fresh.insert_batch(items).expect("vectors were checked when first inserted");
        *self = fresh;
    }

    /// The `k` items most similar to `query` that pass `filter`, best first. `ef`
    /// overrides the configured search breadth.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: &SearchFilter,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check(query)?;
        if k == 0 || self.live.is_empty() {
            return Ok(Vec::new());
        }
        let ef = ef.unwrap_or(self.config.ef_search).max(k);
        let compiled = Compiled::new(filter, &self.strings);
        let accept = |slot: usize| {
            let s = &self.slots[slot];
            s.alive && compiled.matches(s)
        };
        let all_alive = self.live.len() == self.slots.len();
        let found = if filter.is_empty() && all_alive {
            self.graph.search(query, k, ef, |_| true)
        } else {
            self.graph.search(query, k, ef, |n| accept(n as usize))
        };
        let mut hits: Vec<Hit> =
            found.into_iter().map(|(d, n)| Hit { id: self.slots[n as usize].id, score: 1.0 - d }).collect();
        if hits.len() < k && self.live.len() > hits.len() {
            // a selective filter: the exact answer over the matching items
            let mut exact: Vec<Hit> = (0..self.slots.len())
                .filter(|&s| accept(s))
                .map(|s| Hit { id: self.slots[s].id, score: dot(query, self.vector(s)) })
                .collect();
            exact.sort_by(|a, b| b.score.total_cmp(&a.score));
            exact.truncate(k);
            hits = exact;
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU runs, by name.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> = vec![("portable", dot_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                all.push(("avx2", dot_avx2_detected));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(("avx512", dot_avx512_detected));
            }
        }
        all
    }

    #[test]
    fn dot_kernels_agree_with_f64() {
        let mut state = 1u64;
        let mut rnd = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let kernels = kernels();
        for n in (0..=80).chain([127, 128, 129, 383, 384, 385, 1000]) {
            for scale in [1.0f32, 1e-3, 30.0] {
                let a: Vec<f32> = (0..n).map(|_| rnd() * scale).collect();
                let b: Vec<f32> = (0..n).map(|_| rnd()).collect();
                let exact: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
                let bound: f64 = a.iter().zip(&b).map(|(x, y)| f64::from((x * y).abs())).sum::<f64>() * 1e-5 + 1e-30;
                for (name, k) in &kernels {
                    let got = f64::from(k(&a, &b));
                    assert!((got - exact).abs() <= bound, "{name} n={n} scale={scale}: {got} vs {exact}");
                    // a longer second operand is cut to the first's length, and back
                    let longer: Vec<f32> = b.iter().copied().chain([7.0; 5]).collect();
                    assert_eq!(k(&a, &longer).to_bits(), k(&a, &b).to_bits(), "{name} n={n}");
                    assert_eq!(k(&longer, &a).to_bits(), k(&b, &a).to_bits(), "{name} n={n}");
                }
            }
        }
        // the chosen kernel is the widest this CPU runs
        let chosen = kernel();
        let (name, widest) = kernels.last().copied().unwrap();
        assert!(std::ptr::fn_addr_eq(chosen, widest), "the chosen kernel is not {name}");
    }

    /// Deterministic unit vectors in 20 clusters.
    pub(super) fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut rnd = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| rnd()).collect()).collect();
        (0..n)
            .map(|i| {
                let c = &centres[i % centres.len()];
                let mut v: Vec<f32> = c.iter().map(|x| x + 0.6 * rnd()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect()
    }

    pub(super) fn meta(i: usize) -> ItemMeta {
        ItemMeta {
            kind: Some(if i.is_multiple_of(2) { ItemKind::Document } else { ItemKind::Transcript }),
            department_id: i.is_multiple_of(3).then(|| "sales".to_string()),
            room_id: (i % 2 == 1).then(|| format!("room-{}", i % 5)),
            document_id: None,
        }
    }

    fn brute(vs: &[Vec<f32>], q: &[f32], k: usize, ok: impl Fn(usize) -> bool) -> Vec<u64> {
        let mut all: Vec<(u64, f32)> = (0..vs.len()).filter(|&i| ok(i)).map(|i| (i as u64, dot(q, &vs[i]))).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.into_iter().take(k).map(|h| h.0).collect()
    }

    #[test]
    fn recall_filters_removal_and_snapshots() {
        let dim = 64;
        let vs = vectors(4_000, dim, 7);
        let mut index = VectorIndex::new(IndexConfig { dim, capacity_hint: 4_000, ..IndexConfig::default() });
        index.insert_batch(vs.iter().enumerate().map(|(i, v)| (i as u64, v.clone(), meta(i))).collect()).unwrap();
        assert_eq!(index.len(), 4_000);
        let queries = vectors(50, dim, 99);
        let mut found = 0;
        for q in &queries {
            let hits = index.search(q, 10, Some(128), &SearchFilter::default()).unwrap();
            let truth = brute(&vs, q, 10, |_| true);
            found += hits.iter().filter(|h| truth.contains(&h.id)).count();
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");

        // filters: only matching items, and still k of them
        let f = SearchFilter {
            kinds: Some(vec![ItemKind::Transcript]),
            room_id: Some("room-3".into()),
            ..Default::default()
        };
        let hits = index.search(&queries[0], 10, None, &f).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.id % 2 == 1 && h.id % 5 == 3), "{hits:?}");
        let dept = SearchFilter { department_id: Some("support".into()), ..Default::default() };
        let hits = index.search(&queries[1], 20, None, &dept).unwrap();
        assert!(hits.iter().all(|h| h.id % 3 != 0), "sales items are not support's");

        // removal is immediate; replacing an id keeps one copy
        let top = index.search(&queries[2], 1, None, &SearchFilter::default()).unwrap()[0];
        assert!(index.remove(top.id));
        assert!(!index.remove(top.id));
        assert!(index.search(&queries[2], 10, None, &SearchFilter::default()).unwrap().iter().all(|h| h.id != top.id));
        index.insert(5, &queries[3], meta(5)).unwrap();
        assert_eq!(index.search(&queries[3], 1, None, &SearchFilter::default()).unwrap()[0].id, 5);
        assert_eq!(index.len(), 3_999);

        // snapshots round-trip: the same graph, tombstones included, so the same hits
        // and scores with and without filters; and bad files are errors
        let removed = (100..400).step_by(3).filter(|&id| index.remove(id)).count();
        assert!(removed >= 99, "{removed}");
        assert_eq!(index.len(), 3_999 - removed);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.hnsw");
        index.save(&path).unwrap();
        let back = VectorIndex::load(&path, dim).unwrap();
        assert_eq!(back.len(), index.len());
        assert_eq!(back.max_id(), index.max_id());
        assert_eq!(back.slots.len(), index.slots.len(), "tombstones are kept");
        assert_same_answers(&index, &back, &queries);
        assert!(!back.contains(top.id));
        assert!(!back.contains(103));
        assert!(VectorIndex::load(&path, dim + 1).is_err());
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 7, 12, 40, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(VectorIndex::load(&path, dim).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 3] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(VectorIndex::load(&path, dim).unwrap_err().to_string().contains("checksum"));
        assert!(VectorIndex::load(&dir.path().join("absent"), dim).is_err());
    }

    /// Filters that select by kind, department (known, unknown), room (known, unknown),
    /// and all three.
    pub(super) fn filters() -> Vec<SearchFilter> {
        vec![
            SearchFilter::default(),
            SearchFilter { kinds: Some(vec![ItemKind::Document]), ..Default::default() },
            SearchFilter { department_id: Some("sales".into()), ..Default::default() },
            SearchFilter { department_id: Some("support".into()), ..Default::default() },
            SearchFilter { room_id: Some("room-1".into()), ..Default::default() },
            SearchFilter { room_id: Some("nowhere".into()), ..Default::default() },
            SearchFilter {
                kinds: Some(vec![ItemKind::Transcript]),
                department_id: Some("sales".into()),
                room_id: Some("room-3".into()),
            },
        ]
    }

    /// Both indexes give the same hits with bit-identical scores for every query, filter,
    /// k and ef, and hold the same items.
    pub(super) fn assert_same_answers(a: &VectorIndex, b: &VectorIndex, queries: &[Vec<f32>]) {
        assert_eq!(a.len(), b.len());
        assert_eq!(a.max_id(), b.max_id());
        let mut compared = 0;
        for f in filters() {
            for q in queries {
                for (k, ef) in [(1, None), (10, None), (10, Some(16)), (40, Some(200))] {
                    let x = a.search(q, k, ef, &f).unwrap();
                    let y = b.search(q, k, ef, &f).unwrap();
                    assert_eq!(x.len(), y.len(), "{f:?} k {k}");
                    for (h, g) in x.iter().zip(&y) {
                        assert_eq!((h.id, h.score.to_bits()), (g.id, g.score.to_bits()), "{f:?} k {k} ef {ef:?}");
                    }
                    compared += x.len();
                }
            }
        }
        assert!(compared > 0, "the searches found nothing to compare");
    }

    #[test]
    fn bad_vectors_are_refused_and_negative_dots_are_fine() {
        let mut index = VectorIndex::new(IndexConfig { dim: 2, ..IndexConfig::default() });
        assert!(matches!(index.insert(1, &[1.0], ItemMeta::default()), Err(IndexError::Dimension { .. })));
        assert!(matches!(index.insert(1, &[f32::NAN, 0.0], ItemMeta::default()), Err(IndexError::NotFinite)));
        index.insert(1, &[1.0, 0.0], ItemMeta::default()).unwrap();
        index.insert(2, &[-1.0, 0.0], ItemMeta::default()).unwrap();
        let hits = index.search(&[1.0, 0.0], 2, None, &SearchFilter::default()).unwrap();
        assert_eq!(hits[0], Hit { id: 1, score: 1.0 });
        assert_eq!(hits[1], Hit { id: 2, score: -1.0 });
    }
}
