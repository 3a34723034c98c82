//! A flat HNSW graph over unit vectors stored once, contiguously: u32 node ids, the
//! level-0 links in one array of `2M` slots a node, the links of levels 1.. in another
//! of `M` slots a (node, level) block, and a reused visited set per thread. Writes take
//! `&mut self`; searches `&self`. Every part is a flat array, so a snapshot writes and
//! reads the graph as a few large blocks ([`Graph::validate`] checks a loaded one).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::dot;

/// A distance with a total order, for the heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct D(f32);
impl Eq for D {}
impl PartialOrd for D {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for D {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

thread_local! {
    /// (generation, marks) reused across searches on this thread.
    static VISITED: RefCell<(u32, Vec<u32>)> = const { RefCell::new((0, Vec::new())) };
}

/// The highest level a node can get.
pub(super) const MAX_LEVEL: u8 = 16;

pub(super) struct Graph {
    dim: usize,
    pub(super) m: usize,
    pub(super) m0: usize,
    ef_construction: usize,
    ml: f64,
    pub(super) vectors: Vec<f32>,
    pub(super) levels: Vec<u8>,
    /// Level-0 links: `m0` slots a node, `len0` of them used.
    pub(super) links0: Vec<u32>,
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

/// A graph's arrays as a snapshot stores them (see [`Graph`] for what each holds).
pub(super) struct Parts {
    pub dim: usize,
    pub max_connections: usize,
    pub ef_construction: usize,
    pub vectors: Vec<f32>,
    pub levels: Vec<u8>,
    pub links0: Vec<u32>,
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
        Graph {
            dim,
            m,
            m0: 2 * m,
            ef_construction: ef_construction.max(m),
            ml: 1.0 / (m as f64).ln(),
            vectors: Vec::with_capacity(capacity * dim),
            levels: Vec::with_capacity(capacity),
            links0: Vec::with_capacity(capacity * 2 * m),
            len0: Vec::with_capacity(capacity),
            upper_at: Vec::with_capacity(capacity),
            upper_links: Vec::with_capacity(upper_blocks(capacity, m) * m),
            upper_len: Vec::with_capacity(upper_blocks(capacity, m)),
            entry: None,
            max_level: 0,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// A graph from a snapshot's arrays, checked so that no search on it can index out
    /// of bounds or walk a link to a node without that level: every array has the size
    /// the node count gives, every link points at a node of the link's level, and the
    /// entry point is a node of the top level.
    pub fn from_parts(p: Parts) -> Result<Graph, String> {
        let mut g = Graph::new(p.dim, p.max_connections, p.ef_construction, 0);
        let (n, m, m0) = (p.levels.len(), g.m, g.m0);
        if n >= u32::MAX as usize {
            return Err(format!("{n} nodes are more than a graph holds"));
        }
        if p.dim == 0
            || p.vectors.len() != n * p.dim
            || p.links0.len() != n * m0
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
        for (node, (&len, links)) in p.len0.iter().zip(p.links0.chunks_exact(m0)).enumerate() {
            let links = links.get(..len as usize).ok_or_else(|| format!("node {node} has {len} links, over {m0}"))?;
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
        if p.vectors.iter().any(|x| !x.is_finite()) {
            return Err("a vector holds a value that is not a finite number".into());
        }
        g.vectors = p.vectors;
        g.levels = p.levels;
        g.links0 = p.links0;
        g.len0 = p.len0;
        g.upper_at = upper_at;
        g.upper_links = p.upper_links;
        g.upper_len = p.upper_len;
        g.entry = p.entry;
        g.max_level = p.max_level;
        g.rng = p.rng;
        Ok(g)
    }

    /// Room for `n` more nodes, allocated exactly (no doubling).
    pub fn reserve(&mut self, n: usize) {
        self.vectors.reserve_exact(n * self.dim);
        self.levels.reserve_exact(n);
        self.links0.reserve_exact(n * self.m0);
        self.len0.reserve_exact(n);
        self.upper_at.reserve_exact(n);
        self.upper_links.reserve(upper_blocks(n, self.m) * self.m);
        self.upper_len.reserve(upper_blocks(n, self.m));
    }

    pub fn vector(&self, n: u32) -> &[f32] {
        &self.vectors[n as usize * self.dim..(n as usize + 1) * self.dim]
    }

    fn dist(&self, q: &[f32], n: u32) -> f32 {
        1.0 - dot(q, self.vector(n))
    }

    /// The upper-links block of `n` at `level` (>= 1).
    fn block(&self, n: u32, level: u8) -> usize {
        self.upper_at[n as usize] as usize + level as usize - 1
    }

    fn neighbours(&self, n: u32, level: u8) -> &[u32] {
        if level == 0 {
            let at = n as usize * self.m0;
            &self.links0[at..at + self.len0[n as usize] as usize]
        } else {
            let b = self.block(n, level);
            &self.upper_links[b * self.m..b * self.m + self.upper_len[b] as usize]
        }
    }

    fn set_neighbours(&mut self, n: u32, level: u8, list: &[u32]) {
        if level == 0 {
            let at = n as usize * self.m0;
            self.links0[at..at + list.len()].copy_from_slice(list);
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

    /// The `ef` nearest nodes to `q` at `level` from `entries` that `accept` (every node is
    /// walked through; only accepted ones are returned), nearest first.
    fn search_layer(
        &self,
        q: &[f32],
        entries: &[u32],
        ef: usize,
        level: u8,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(f32, u32)> {
        VISITED.with(|v| {
            let mut v = v.borrow_mut();
            let (generation, marks) = &mut *v;
            if marks.len() < self.len() {
                marks.resize(self.len(), 0);
            }
            *generation = generation.wrapping_add(1);
            if *generation == 0 {
                marks.iter_mut().for_each(|m| *m = 0);
                *generation = 1;
            }
            let generation = *generation;
            let mut candidates: BinaryHeap<Reverse<(D, u32)>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<(D, u32)> = BinaryHeap::with_capacity(ef + 1);
            for &e in entries {
                if marks[e as usize] == generation {
                    continue;
                }
                marks[e as usize] = generation;
                let d = D(self.dist(q, e));
                candidates.push(Reverse((d, e)));
                if accept(e) {
                    results.push((d, e));
                }
            }
            while let Some(Reverse((d, n))) = candidates.pop() {
                if results.len() >= ef && d > results.peek().map_or(D(f32::MAX), |r| r.0) {
                    break;
                }
                for &nb in self.neighbours(n, level) {
                    if marks[nb as usize] == generation {
                        continue;
                    }
                    marks[nb as usize] = generation;
                    let dn = D(self.dist(q, nb));
                    let worst = results.peek().map_or(D(f32::MAX), |r| r.0);
                    if results.len() < ef || dn < worst {
                        candidates.push(Reverse((dn, nb)));
                        if accept(nb) {
                            results.push((dn, nb));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            let mut out: Vec<(f32, u32)> = results.into_iter().map(|(d, n)| (d.0, n)).collect();
            out.sort_by(|a, b| a.0.total_cmp(&b.0));
            out
        })
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
            if kept.iter().all(|&k| 1.0 - dot(cv, self.vector(k)) > d) {
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

    /// Adds a node and returns its id.
    pub fn insert(&mut self, v: &[f32]) -> u32 {
        let id = self.len() as u32;
        let level = self.random_level();
        self.vectors.extend_from_slice(v);
        self.levels.push(level);
        self.links0.extend(std::iter::repeat_n(0, self.m0));
        self.len0.push(0);
        self.upper_at.push(self.upper_len.len() as u32);
        self.upper_len.extend(std::iter::repeat_n(0, level as usize));
        self.upper_links.extend(std::iter::repeat_n(0, level as usize * self.m));
        let Some(mut ep) = self.entry else {
            self.entry = Some(id);
            self.max_level = level;
            return id;
        };
        let all = |_| true;
        let mut l = self.max_level;
        while l > level {
            ep = self.search_layer(v, &[ep], 1, l, &all)[0].1;
            l -= 1;
        }
        let mut entries = vec![ep];
        for l in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(v, &entries, self.ef_construction, l, &all);
            let max = if l == 0 { self.m0 } else { self.m };
            let chosen = self.select(&found, self.m);
            self.set_neighbours(id, l, &chosen);
            for &nb in &chosen {
                let mut list: Vec<u32> = self.neighbours(nb, l).to_vec();
                list.push(id);
                if list.len() > max {
                    let nbv = self.vector(nb).to_vec();
                    let mut scored: Vec<(f32, u32)> = list.iter().map(|&x| (self.dist(&nbv, x), x)).collect();
                    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
                    list = self.select(&scored, max);
                }
                self.set_neighbours(nb, l, &list);
            }
            entries = found.iter().map(|f| f.1).collect();
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(id);
        }
        id
    }

    /// The `k` nearest accepted nodes, nearest first, as (distance, node).
    pub fn search(&self, q: &[f32], k: usize, ef: usize, accept: &dyn Fn(u32) -> bool) -> Vec<(f32, u32)> {
        let Some(mut ep) = self.entry else { return Vec::new() };
        let all = |_| true;
        for l in (1..=self.max_level).rev() {
            ep = self.search_layer(q, &[ep], 1, l, &all)[0].1;
        }
        let mut found = self.search_layer(q, &[ep], ef.max(k), 0, accept);
        found.truncate(k);
        found
    }
}
