//! A flat HNSW graph over unit vectors stored once, contiguously: u32 node ids, the
//! level-0 links in one array of `2M` slots a node, upper-level links per node, and a
//! reused visited set per thread. Writes take `&mut self`; searches `&self`.

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

pub(crate) struct Graph {
    dim: usize,
    m: usize,
    m0: usize,
    ef_construction: usize,
    ml: f64,
    pub(crate) vectors: Vec<f32>,
    levels: Vec<u8>,
    /// Level-0 links: `m0` slots a node, `len0` of them used.
    links0: Vec<u32>,
    len0: Vec<u8>,
    /// Links of levels 1.. for nodes that reach them: `upper[node][level - 1]`.
    upper: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    max_level: u8,
    rng: u64,
}

impl Graph {
    pub fn new(dim: usize, m: usize, ef_construction: usize, capacity: usize) -> Graph {
        let m = m.clamp(4, 64);
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
            upper: Vec::with_capacity(capacity),
            entry: None,
            max_level: 0,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Room for `n` more nodes, allocated exactly (no doubling).
    pub fn reserve(&mut self, n: usize) {
        self.vectors.reserve_exact(n * self.dim);
        self.levels.reserve_exact(n);
        self.links0.reserve_exact(n * self.m0);
        self.len0.reserve_exact(n);
        self.upper.reserve_exact(n);
    }

    pub fn vector(&self, n: u32) -> &[f32] {
        &self.vectors[n as usize * self.dim..(n as usize + 1) * self.dim]
    }

    fn dist(&self, q: &[f32], n: u32) -> f32 {
        1.0 - dot(q, self.vector(n))
    }

    fn neighbours(&self, n: u32, level: u8) -> &[u32] {
        if level == 0 {
            let at = n as usize * self.m0;
            &self.links0[at..at + self.len0[n as usize] as usize]
        } else {
            &self.upper[n as usize][level as usize - 1]
        }
    }

    fn set_neighbours(&mut self, n: u32, level: u8, list: &[u32]) {
        if level == 0 {
            let at = n as usize * self.m0;
            self.links0[at..at + list.len()].copy_from_slice(list);
            self.len0[n as usize] = list.len() as u8;
        } else {
            self.upper[n as usize][level as usize - 1] = list.to_vec();
        }
    }

    fn random_level(&mut self) -> u8 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let u = ((self.rng >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.ml).floor() as usize).min(16) as u8
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
        self.upper.push(vec![Vec::new(); level as usize]);
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
