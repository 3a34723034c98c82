//! A flat HNSW graph over unit vectors with u32 node ids.
//!
//! # Layout
//! - Level 0, where a search spends nearly all its time, is one array of node records,
//!   each a whole number of 64-byte lines and aligned to one: the node's vector, then its
//!   `2M` level-0 link slots (`len0` says how many are used). Reading a node's links and
//!   then a neighbour's vector touches a few runs of consecutive lines, which the
//!   hardware prefetcher follows; the search also prefetches the next neighbour's record
//!   while it scores the current one.
//! - The links of levels 1.. (a small share of the nodes) are in another array of `M`
//!   slots a (node, level) block.
//! - On AVX-512 CPUs the search loop is compiled for AVX-512 with the dot kernel inlined.
//! - Searches keep their visited marks (generation-tagged, so never cleared) and heaps in
//!   a per-thread scratch, and order heap entries by one `u64` key: the distance's bits
//!   mapped to an order-preserving integer above the node id.
//!
//! Writes take `&mut self`; searches `&self`. A snapshot writes the records' links and
//! vectors as two sections and reads them back straight into the records
//! ([`Graph::with_nodes`], [`Graph::adopt`] checks a loaded graph).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Kernel, kernel, kernel_is_avx512};

/// One 64-byte line of node records.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line([u32; 16]);

// SAFETY: 64 bytes of u32s with the struct's alignment equal to its size: no padding, and
// every bit pattern is a valid value.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above; `Line` is `Copy` and `'static`.
unsafe impl bytemuck::Pod for Line {}

const LINE_WORDS: usize = 16;

/// Per-thread search state, reused across searches.
#[derive(Default)]
struct Scratch {
    generation: u16,
    /// `marks[n] == generation`: node `n` was seen in this search.
    marks: Vec<u16>,
    /// Nodes to expand, nearest first.
    candidates: BinaryHeap<Reverse<u64>>,
    /// The best accepted nodes so far, farthest on top.
    results: BinaryHeap<u64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A heap key: ordered as (distance, node), with the distance compared as `total_cmp`
/// compares it.
fn key(d: f32, n: u32) -> u64 {
    let b = d.to_bits();
    let ord = if b >> 31 == 1 { !b } else { b | 1 << 31 };
    (u64::from(ord) << 32) | u64::from(n)
}

fn key_dist(k: u64) -> f32 {
    let ord = (k >> 32) as u32;
    f32::from_bits(if ord >> 31 == 1 { ord & !(1 << 31) } else { !ord })
}

fn key_node(k: u64) -> u32 {
    k as u32
}

/// Asks the CPU to start loading the line at `p` into its caches.
#[inline(always)]
fn prefetch(p: *const u32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint; it never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The highest level a node can get.
pub(super) const MAX_LEVEL: u8 = 16;

pub(super) struct Graph {
    dim: usize,
    pub(super) m: usize,
    pub(super) m0: usize,
    ef_construction: usize,
    ml: f64,
    /// Words (4 bytes) a node record: `dim` vector values, `m0` link slots, padding to a
    /// whole line.
    stride: usize,
    /// The level-0 records, `stride / 16` lines a node.
    records: Vec<Line>,
    pub(super) levels: Vec<u8>,
    /// Level-0 link slots used, by node.
    pub(super) len0: Vec<u8>,
    /// A node's first block of upper links: its levels `1..=level` are the blocks
    /// `upper_at[node]..upper_at[node] + level` (the prefix sums of `levels`).
    pub(super) upper_at: Vec<u32>,
    /// Links of levels 1..: `m` slots a block, `upper_len` of them used.
    pub(super) upper_links: Vec<u32>,
    pub(super) upper_len: Vec<u8>,
    pub(super) entry: Option<u32>,
    pub(super) max_level: u8,
    /// The level generator's state, kept in snapshots so that a loaded graph grows
    /// as the saved one would have.
    pub(super) rng: u64,
    dot: Kernel,
    /// `dot` is the AVX-512 kernel: searches run a copy compiled for it.
    avx512: bool,
}

/// Links a node keeps on levels 1.. (`M`) for a configured `max_connections`.
pub(super) fn links_per_level(max_connections: usize) -> usize {
    max_connections.clamp(4, 64)
}

/// Upper-link blocks to expect for `n` nodes: a node reaches level `l` with
/// probability `M^-l`, so about `n / (M - 1)` blocks in all.
fn upper_blocks(n: usize, m: usize) -> usize {
    n / (m - 1) + 1
}

/// A loaded graph's arrays other than the records (see [`Graph`] for what each holds).
pub(super) struct Parts {
    pub levels: Vec<u8>,
    pub len0: Vec<u8>,
    pub upper_links: Vec<u32>,
    pub upper_len: Vec<u8>,
    pub entry: Option<u32>,
    pub max_level: u8,
    pub rng: u64,
}

impl Graph {
    pub fn new(dim: usize, m: usize, ef_construction: usize, capacity: usize) -> Graph {
        let m = links_per_level(m);
        let m0 = 2 * m;
        let stride = (dim + m0).div_ceil(LINE_WORDS) * LINE_WORDS;
        Graph {
            dim,
            m,
            m0,
            ef_construction: ef_construction.max(m),
            ml: 1.0 / (m as f64).ln(),
            stride,
            records: Vec::with_capacity(capacity * stride / LINE_WORDS),
            levels: Vec::with_capacity(capacity),
            len0: Vec::with_capacity(capacity),
            upper_at: Vec::with_capacity(capacity),
            upper_links: Vec::with_capacity(upper_blocks(capacity, m) * m),
            upper_len: Vec::with_capacity(upper_blocks(capacity, m)),
            entry: None,
            max_level: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            dot: kernel(),
            avx512: kernel_is_avx512(),
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// A graph of `n` zeroed records and nothing else, for a snapshot to fill with
    /// [`Self::set_vector`] and [`Self::set_link_slots`] and then hand the rest to
    /// [`Self::adopt`].
    pub fn with_nodes(dim: usize, max_connections: usize, ef_construction: usize, n: usize) -> Graph {
        let mut g = Graph::new(dim, max_connections, ef_construction, 0);
        g.records = vec![Line([0; LINE_WORDS]); n * g.stride / LINE_WORDS];
        g
    }

    /// Nodes the records hold room for (the node count before [`Self::adopt`]).
    fn record_count(&self) -> usize {
        self.records.len() * LINE_WORDS / self.stride
    }

    pub fn set_vector(&mut self, n: usize, v: &[f32]) {
        let at = n * self.stride;
        bytemuck::cast_slice_mut::<Line, f32>(&mut self.records)[at..at + self.dim].copy_from_slice(v);
    }

    /// All `m0` level-0 link slots of node `n`, used or not.
    pub fn set_link_slots(&mut self, n: usize, slots: &[u32]) {
        let at = n * self.stride + self.dim;
        bytemuck::cast_slice_mut::<Line, u32>(&mut self.records)[at..at + self.m0].copy_from_slice(slots);
    }

    /// All `m0` level-0 link slots of node `n`, used or not.
    pub fn link_slots(&self, n: usize) -> &[u32] {
        let at = n * self.stride + self.dim;
        &self.words()[at..at + self.m0]
    }

    /// The records as words.
    pub fn words(&self) -> &[u32] {
        bytemuck::cast_slice(&self.records)
    }

    /// Completes a graph made by [`Self::with_nodes`] with a snapshot's other arrays,
    /// checked so that no search on it can index out of bounds or walk a link to a node
    /// without that level: every array has the size the node count gives, every link
    /// points at a node of the link's level, and the entry point is a node of the top
    /// level.
    pub fn adopt(mut self, p: Parts) -> Result<Graph, String> {
        let (n, m, m0) = (p.levels.len(), self.m, self.m0);
        if n >= u32::MAX as usize {
            return Err(format!("{n} nodes are more than a graph holds"));
        }
        if self.dim == 0
            || self.record_count() != n
            || self.records.len() * LINE_WORDS != n * self.stride
            || p.len0.len() != n
            || p.upper_links.len() != p.upper_len.len() * m
        {
            return Err("the graph's arrays disagree on its size".into());
        }
        if p.rng == 0 {
            return Err("the level generator's state is zero".into());
        }
        if p.max_level > MAX_LEVEL {
            return Err(format!("top level {} is above {MAX_LEVEL}", p.max_level));
        }
        let mut upper_at = Vec::with_capacity(n);
        let mut blocks = 0usize;
        for (node, &level) in p.levels.iter().enumerate() {
            if level > p.max_level {
                return Err(format!("node {node} has level {level}, above the top level {}", p.max_level));
            }
            upper_at.push(blocks as u32);
            blocks += level as usize;
        }
        if blocks != p.upper_len.len() {
            return Err(format!("the levels need {blocks} upper link blocks, the graph has {}", p.upper_len.len()));
        }
        match p.entry {
            None if n == 0 && p.max_level == 0 => {}
            Some(e) if (e as usize) < n && p.levels[e as usize] == p.max_level => {}
            e => return Err(format!("entry point {e:?} is not a node of the top level {}", p.max_level)),
        }
        for (node, &len) in p.len0.iter().enumerate() {
            let links = self
                .link_slots(node)
                .get(..len as usize)
                .ok_or_else(|| format!("node {node} has {len} links, over {m0}"))?;
            if let Some(&to) = links.iter().find(|&&to| to as usize >= n) {
                return Err(format!("node {node} links to node {to}, out of range ({n} nodes)"));
            }
        }
        for (node, (&level, &first)) in p.levels.iter().zip(&upper_at).enumerate() {
            for l in 1..=level {
                let b = first as usize + l as usize - 1;
                let len = p.upper_len[b] as usize;
                if len > m {
                    return Err(format!("node {node} has {len} links at level {l}, over {m}"));
                }
                for &to in &p.upper_links[b * m..b * m + len] {
                    if p.levels.get(to as usize).is_none_or(|&tl| tl < l) {
                        return Err(format!("node {node} links at level {l} to node {to}, which is not on that level"));
                    }
                }
            }
        }
        if (0..n).any(|node| self.vector(node as u32).iter().any(|x| !x.is_finite())) {
            return Err("a vector holds a value that is not a finite number".into());
        }
        self.levels = p.levels;
        self.len0 = p.len0;
        self.upper_at = upper_at;
        self.upper_links = p.upper_links;
        self.upper_len = p.upper_len;
        self.entry = p.entry;
        self.max_level = p.max_level;
        self.rng = p.rng;
        Ok(self)
    }

    /// Room for `n` more nodes, allocated exactly (no doubling).
    pub fn reserve(&mut self, n: usize) {
        self.records.reserve_exact(n * self.stride / LINE_WORDS);
        self.levels.reserve_exact(n);
        self.len0.reserve_exact(n);
        self.upper_at.reserve_exact(n);
        self.upper_links.reserve(upper_blocks(n, self.m) * self.m);
        self.upper_len.reserve(upper_blocks(n, self.m));
    }

    pub fn vector(&self, n: u32) -> &[f32] {
        let at = n as usize * self.stride;
        &bytemuck::cast_slice::<Line, f32>(&self.records)[at..at + self.dim]
    }

    /// The first word of node `n`'s record.
    fn record_ptr(&self, n: u32) -> *const u32 {
        self.records.as_ptr().cast::<u32>().wrapping_add(n as usize * self.stride)
    }

    /// Prefetches the lines of node `n`'s vector.
    #[inline(always)]
    fn prefetch_vector(&self, n: u32) {
        let p = self.record_ptr(n);
        for line in 0..self.dim.div_ceil(LINE_WORDS) {
            prefetch(p.wrapping_add(line * LINE_WORDS));
        }
    }

    fn dist(&self, q: &[f32], n: u32) -> f32 {
        1.0 - (self.dot)(q, self.vector(n))
    }

    /// The upper-links block of `n` at `level` (>= 1).
    fn block(&self, n: u32, level: u8) -> usize {
        self.upper_at[n as usize] as usize + level as usize - 1
    }

    fn neighbours(&self, n: u32, level: u8) -> &[u32] {
        if level == 0 {
            &self.link_slots(n as usize)[..self.len0[n as usize] as usize]
        } else {
            let b = self.block(n, level);
            &self.upper_links[b * self.m..b * self.m + self.upper_len[b] as usize]
        }
    }

    fn set_neighbours(&mut self, n: u32, level: u8, list: &[u32]) {
        if level == 0 {
            let at = n as usize * self.stride + self.dim;
            bytemuck::cast_slice_mut::<Line, u32>(&mut self.records)[at..at + list.len()].copy_from_slice(list);
            self.len0[n as usize] = list.len() as u8;
        } else {
            let b = self.block(n, level);
            self.upper_links[b * self.m..b * self.m + list.len()].copy_from_slice(list);
            self.upper_len[b] = list.len() as u8;
        }
    }

    fn random_level(&mut self) -> u8 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let u = ((self.rng >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.ml).floor() as usize).min(MAX_LEVEL as usize) as u8
    }

    /// From `cur` (at distance `d` from `q`), moves to a nearer neighbour at `level` while
    /// there is one; returns the node it stops at and its distance.
    fn greedy(&self, q: &[f32], mut cur: u32, mut d: f32, level: u8) -> (u32, f32) {
        loop {
            let mut moved = false;
            for &nb in self.neighbours(cur, level) {
                let dn = self.dist(q, nb);
                if dn < d {
                    (cur, d, moved) = (nb, dn, true);
                }
            }
            if !moved {
                return (cur, d);
            }
        }
    }

    /// The `ef` nearest nodes to `q` at `level` from `entries` that `accept` (every node is
    /// walked through; only accepted ones are returned), nearest first.
    fn search_layer<F: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        entries: &[u32],
        ef: usize,
        level: u8,
        accept: F,
    ) -> Vec<(f32, u32)> {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            // SAFETY: `avx512` is set only when the CPU has AVX-512F.
            return unsafe { self.search_layer_avx512(q, entries, ef, level, accept) };
        }
        self.search_layer_by(q, entries, ef, level, accept, self.dot)
    }

    /// [`Self::search_layer`] compiled for AVX-512, with the dot kernel inlined.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn search_layer_avx512<F: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        entries: &[u32],
        ef: usize,
        level: u8,
        accept: F,
    ) -> Vec<(f32, u32)> {
        // SAFETY: this function runs only on CPUs with AVX-512F.
        self.search_layer_by(q, entries, ef, level, accept, |a, b| unsafe { super::dot_avx512(a, b) })
    }

    #[inline(always)]
    fn search_layer_by<F: Fn(u32) -> bool, D: Fn(&[f32], &[f32]) -> f32>(
        &self,
        q: &[f32],
        entries: &[u32],
        ef: usize,
        level: u8,
        accept: F,
        dot: D,
    ) -> Vec<(f32, u32)> {
        let dist = |n: u32| 1.0 - dot(q, self.vector(n));
        // taken out of the thread-local for the search and put back after it
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let Scratch { generation, marks, candidates, results } = &mut scratch;
        if marks.len() < self.len() {
            marks.resize(self.len(), 0);
        }
        *generation = generation.wrapping_add(1);
        if *generation == 0 {
            marks.fill(0);
            *generation = 1;
        }
        let generation = *generation;
        candidates.clear();
        results.clear();
        for &e in entries {
            if marks[e as usize] == generation {
                continue;
            }
            marks[e as usize] = generation;
            let k = key(dist(e), e);
            candidates.push(Reverse(k));
            if accept(e) {
                results.push(k);
                if results.len() > ef {
                    results.pop();
                }
            }
        }
        // the unseen neighbours of the node being expanded
        let mut fresh = [0u32; 2 * 64];
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|&worst| c > worst) {
                break;
            }
            let mut count = 0;
            for &nb in self.neighbours(key_node(c), level) {
                let seen = &mut marks[nb as usize];
                if *seen != generation {
                    *seen = generation;
                    fresh[count] = nb;
                    count += 1;
                }
            }
            if count > 0 {
                self.prefetch_vector(fresh[0]);
            }
            for i in 0..count {
                let nb = fresh[i];
                if i + 1 < count {
                    self.prefetch_vector(fresh[i + 1]);
                }
                let k = key(dist(nb), nb);
                if results.len() < ef || results.peek().is_some_and(|&worst| k < worst) {
                    candidates.push(Reverse(k));
                    if accept(nb) {
                        results.push(k);
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<u64> = results.drain().collect();
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        out.sort_unstable();
        out.into_iter().map(|k| (key_dist(k), key_node(k))).collect()
    }

    /// HNSW's neighbour heuristic: keep a candidate only if it is closer to the new node
    /// than to every neighbour already kept.
    fn select(&self, candidates: &[(f32, u32)], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &(d, c) in candidates {
            if kept.len() >= m {
                break;
            }
            let cv = self.vector(c);
            if kept.iter().all(|&k| 1.0 - (self.dot)(cv, self.vector(k)) > d) {
                kept.push(c);
            }
        }
        // fill up with the nearest leftovers so that sparse regions stay connected
        for &(_, c) in candidates {
            if kept.len() >= m {
                break;
            }
            if !kept.contains(&c) {
                kept.push(c);
            }
        }
        kept
    }

    /// Links `nb` to `new` at `level`; a full list is cut back to `max` by [`Self::select`].
    fn add_link(&mut self, nb: u32, new: u32, level: u8, max: usize) {
        let links = self.neighbours(nb, level);
        if links.len() < max {
            let len = links.len();
            if level == 0 {
                let at = nb as usize * self.stride + self.dim + len;
                bytemuck::cast_slice_mut::<Line, u32>(&mut self.records)[at] = new;
                self.len0[nb as usize] += 1;
            } else {
                let b = self.block(nb, level);
                self.upper_links[b * self.m + len] = new;
                self.upper_len[b] += 1;
            }
            return;
        }
        let nbv = self.vector(nb);
        let mut scored: Vec<(f32, u32)> =
            links.iter().chain([&new]).map(|&x| (1.0 - (self.dot)(nbv, self.vector(x)), x)).collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let list = self.select(&scored, max);
        self.set_neighbours(nb, level, &list);
    }

    /// Adds a node and returns its id.
    pub fn insert(&mut self, v: &[f32]) -> u32 {
        let id = self.len() as u32;
        let level = self.random_level();
        self.records.extend(std::iter::repeat_n(Line([0; LINE_WORDS]), self.stride / LINE_WORDS));
        self.set_vector(id as usize, v);
        self.levels.push(level);
        self.len0.push(0);
        self.upper_at.push(self.upper_len.len() as u32);
        self.upper_len.extend(std::iter::repeat_n(0, level as usize));
        self.upper_links.extend(std::iter::repeat_n(0, level as usize * self.m));
        let Some(mut ep) = self.entry else {
            self.entry = Some(id);
            self.max_level = level;
            return id;
        };
        let mut d = self.dist(v, ep);
        let mut l = self.max_level;
        while l > level {
            (ep, d) = self.greedy(v, ep, d, l);
            l -= 1;
        }
        let mut entries = vec![ep];
        for l in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(v, &entries, self.ef_construction, l, |_| true);
            let max = if l == 0 { self.m0 } else { self.m };
            let chosen = self.select(&found, self.m);
            self.set_neighbours(id, l, &chosen);
            for &nb in &chosen {
                self.add_link(nb, id, l, max);
            }
            entries.clear();
            entries.extend(found.iter().map(|f| f.1));
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(id);
        }
        id
    }

    /// The `k` nearest accepted nodes, nearest first, as (distance, node).
    pub fn search<F: Fn(u32) -> bool>(&self, q: &[f32], k: usize, ef: usize, accept: F) -> Vec<(f32, u32)> {
        let Some(mut ep) = self.entry else { return Vec::new() };
        let mut d = self.dist(q, ep);
        for l in (1..=self.max_level).rev() {
            (ep, d) = self.greedy(q, ep, d, l);
        }
        let mut found = self.search_layer(q, &[ep], ef.max(k), 0, accept);
        found.truncate(k);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_as_distances_then_nodes() {
        let ds = [-2.0f32, -1e-7, -0.0, 0.0, 1e-30, 0.25, 1.0, 1.0000001, 2.0, f32::MAX];
        for (i, &a) in ds.iter().enumerate() {
            assert_eq!(key_dist(key(a, 7)).to_bits(), a.to_bits());
            assert_eq!(key_node(key(a, 7)), 7);
            for &b in &ds[i + 1..] {
                assert!(key(a, 9) < key(b, 1), "{a} {b}");
            }
            assert!(key(a, 1) < key(a, 2));
        }
    }

    /// Every search path (the AVX-512 copy where the CPU has it, the generic one with
    /// each kernel) finds the brute-force top 10 for nearly every query.
    #[test]
    fn every_search_path_finds_the_true_neighbours() {
        let dim = 48;
        let vs = super::super::tests::vectors(3_000, dim, 21);
        let queries = super::super::tests::vectors(40, dim, 22);
        let mut g = Graph::new(dim, 16, 100, vs.len());
        for v in &vs {
            g.insert(v);
        }
        let truth: Vec<Vec<u32>> = queries
            .iter()
            .map(|q| {
                let mut all: Vec<(f64, u32)> = (0..vs.len() as u32)
                    .map(|n| (-vs[n as usize].iter().zip(q).map(|(a, b)| f64::from(a * b)).sum::<f64>(), n))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                all.iter().take(10).map(|x| x.1).collect()
            })
            .collect();
        let mut paths: Vec<(String, Kernel, bool)> =
            vec![("generic, portable".into(), super::super::dot_portable as Kernel, false)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                paths.push(("generic, avx2".into(), super::super::dot_avx2_detected, false));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                paths.push(("generic, avx512".into(), super::super::dot_avx512_detected, false));
                paths.push(("avx512 copy".into(), super::super::dot_avx512_detected, true));
            }
        }
        for (name, dot, avx512) in paths {
            (g.dot, g.avx512) = (dot, avx512);
            let mut found = 0;
            for (q, t) in queries.iter().zip(&truth) {
                let hits = g.search(q, 10, 128, |_| true);
                assert!(hits.windows(2).all(|w| w[0].0 <= w[1].0), "{name}: nearest first");
                for &(d, n) in &hits {
                    let exact: f64 = vs[n as usize].iter().zip(q).map(|(a, b)| f64::from(a * b)).sum();
                    assert!((f64::from(1.0 - d) - exact).abs() < 1e-5, "{name}: distance of {n}");
                }
                found += hits.iter().filter(|h| t.contains(&h.1)).count();
            }
            let recall = found as f64 / (10 * queries.len()) as f64;
            assert!(recall >= 0.95, "{name}: recall@10 {recall}");
        }
    }

    #[test]
    fn records_are_aligned_lines_holding_vector_then_links() {
        for (dim, m) in [(2, 4), (32, 8), (384, 16), (100, 12)] {
            let mut g = Graph::new(dim, m, 50, 0);
            assert_eq!(g.stride % LINE_WORDS, 0);
            assert!(g.stride >= dim + g.m0 && g.stride < dim + g.m0 + LINE_WORDS);
            let vs = super::super::tests::vectors(300, dim, 5);
            for v in &vs {
                g.insert(v);
            }
            for (n, v) in vs.iter().enumerate() {
                assert_eq!(g.vector(n as u32), v.as_slice());
                assert_eq!(g.record_ptr(n as u32) as usize % 64, 0);
                assert_eq!(g.vector(n as u32).as_ptr() as usize, g.record_ptr(n as u32) as usize);
                let links = g.neighbours(n as u32, 0);
                assert!(!links.is_empty() && links.len() <= g.m0);
                assert!(links.iter().all(|&to| (to as usize) < vs.len() && to != n as u32));
            }
        }
    }
}
