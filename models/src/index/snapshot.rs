//! The index's snapshot file: the graph as it is in memory, tombstones included, so
//! loading is a straight read with no rebuild; the items' ids and filters; and a SHA-256
//! of every byte before it. Files are written to a temporary file, synced and renamed
//! into place.
//!
//! # Format (version 2)
//!
//! Every number is little-endian; `n` is the node count (live items and tombstones),
//! `b` the number of upper-link blocks (the sum of the node levels), `M` the links a
//! node keeps on levels 1.. (`max_connections` clamped to 4..=64) and `2M` on level 0.
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `HUDDLEIX` |
//! | 4 | format version, 2 |
//! | 4 + 4 + 4 + 4 | dim, max_connections, ef_construction, ef_search |
//! | 8 + 8 + 8 | n, live items, b |
//! | 8 + 8 | interned strings, their total bytes |
//! | 4 + 4 + 8 | entry point (`u32::MAX`: none), top level, level generator state |
//! | 4 a string, then the bytes | string lengths, then the strings (UTF-8) back to back |
//! | 8n | item ids |
//! | 12n | department, room, document: string numbers (`u32::MAX`: none) |
//! | n + n | kind (0 none, 1 document, 2 transcript), alive (0 or 1) |
//! | n + n + b | node levels, level-0 link counts, upper block link counts |
//! | 4 * 2M * n | level-0 links, 2M slots a node |
//! | 4 * M * b | upper links, M slots a block; a node's blocks are its levels 1.. in order |
//! | 4 * dim * n | vectors (f32) |
//! | 32 | SHA-256 of all the bytes above |
//!
//! Loading checks the size the header gives against the file's before it allocates,
//! reads each section in large blocks straight into its array (the level-0 links and the
//! vectors into the graph's node records), and then checks the
//! checksum and the graph's consistency ([`Graph::adopt`]). Any failure is an
//! [`IndexError::Snapshot`], never a panic: the caller rebuilds from storage.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use bytemuck::Pod;
use sha2::{Digest, Sha256};

use super::graph::{self, Graph, Parts};
use super::{IndexConfig, IndexError, Interner, NONE, Slot, VectorIndex};

const MAGIC: &[u8; 8] = b"HUDDLEIX";
const VERSION: u32 = 2;
/// Magic, version and the fixed header fields.
const HEADER_BYTES: u64 = 8 + 4 + 4 * 4 + 3 * 8 + 2 * 8 + 4 + 4 + 8;
/// Sections are hashed and copied in blocks of this size.
const BLOCK: usize = 1 << 20;

/// A number as the file stores it: `le` converts between little-endian and native
/// (the same operation both ways; nothing on little-endian machines).
trait Word: Pod {
    fn le(self) -> Self;
}

impl Word for u8 {
    fn le(self) -> Self {
        self
    }
}

impl Word for u32 {
    fn le(self) -> Self {
        u32::from_le(self)
    }
}

impl Word for u64 {
    fn le(self) -> Self {
        u64::from_le(self)
    }
}

impl Word for f32 {
    fn le(self) -> Self {
        f32::from_bits(u32::from_le(self.to_bits()))
    }
}

/// Writes and hashes.
struct HashWriter<W: Write> {
    out: W,
    hash: Sha256,
}

impl<W: Write> HashWriter<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        for block in b.chunks(BLOCK) {
            self.hash.update(block);
            self.out.write_all(block)?;
        }
        Ok(())
    }

    fn words<T: Word>(&mut self, xs: &[T]) -> std::io::Result<()> {
        if cfg!(target_endian = "little") {
            return self.bytes(bytemuck::cast_slice(xs));
        }
        for block in xs.chunks(BLOCK / size_of::<T>()) {
            let le: Vec<T> = block.iter().map(|x| x.le()).collect();
            self.bytes(bytemuck::cast_slice(&le))?;
        }
        Ok(())
    }

    /// `n` runs of numbers, `run(i)` the i-th, gathered into blocks.
    fn gather<'a, T: Word>(&mut self, n: usize, run: impl Fn(usize) -> &'a [T]) -> std::io::Result<()> {
        let mut block: Vec<T> = Vec::with_capacity(BLOCK / size_of::<T>());
        for i in 0..n {
            let r = run(i);
            if block.len() + r.len() > block.capacity() && !block.is_empty() {
                self.words(&block)?;
                block.clear();
            }
            block.extend_from_slice(r);
        }
        self.words(&block)
    }

    fn u32(&mut self, x: u32) -> std::io::Result<()> {
        self.bytes(&x.to_le_bytes())
    }

    fn u64(&mut self, x: u64) -> std::io::Result<()> {
        self.bytes(&x.to_le_bytes())
    }
}

/// Reads and hashes.
struct HashReader<R: Read> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> HashReader<R> {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        for block in buf.chunks_mut(BLOCK) {
            self.inner.read_exact(block)?;
            self.hash.update(&*block);
        }
        Ok(())
    }

    /// `n` numbers, read straight into the returned array.
    fn words<T: Word>(&mut self, n: usize) -> std::io::Result<Vec<T>> {
        let mut v = vec![T::zeroed(); n];
        self.fill(bytemuck::cast_slice_mut(&mut v))?;
        if cfg!(target_endian = "big") {
            v.iter_mut().for_each(|x| *x = x.le());
        }
        Ok(v)
    }

    /// `n` runs of `per` numbers, read in blocks and handed to `put(i, run)`.
    fn scatter<T: Word>(&mut self, n: usize, per: usize, mut put: impl FnMut(usize, &[T])) -> std::io::Result<()> {
        if per == 0 {
            return Ok(());
        }
        let runs = (BLOCK / (per * size_of::<T>())).clamp(1, n.max(1));
        let mut block = vec![T::zeroed(); runs * per];
        let mut done = 0;
        while done < n {
            let count = runs.min(n - done);
            let block = &mut block[..count * per];
            self.fill(bytemuck::cast_slice_mut(block))?;
            if cfg!(target_endian = "big") {
                block.iter_mut().for_each(|x| *x = x.le());
            }
            for (j, run) in block.chunks_exact(per).enumerate() {
                put(done + j, run);
            }
            done += count;
        }
        Ok(())
    }
}

/// Reads fixed-size header fields from a byte slice.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at gave N bytes")
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

fn u32_of(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// The header: everything needed to size the sections.
struct Header {
    config: IndexConfig,
    nodes: usize,
    live: usize,
    blocks: usize,
    strings: usize,
    string_bytes: usize,
    entry: Option<u32>,
    max_level: u8,
    rng: u64,
}

impl Header {
    /// The sections after the header in file order, with their sizes in bytes, or
    /// `None` when a size overflows.
    fn sections(&self) -> Option<[(&'static str, u64); 13]> {
        let m = graph::links_per_level(self.config.max_connections) as u64;
        let (n, b) = (self.nodes as u64, self.blocks as u64);
        Some([
            ("string lengths", (self.strings as u64).checked_mul(4)?),
            ("strings", self.string_bytes as u64),
            ("ids", n.checked_mul(8)?),
            ("filters", n.checked_mul(12)?),
            ("kinds", n),
            ("alive", n),
            ("levels", n),
            ("level-0 link counts", n),
            ("upper link counts", b),
            ("level-0 links", n.checked_mul(8 * m)?),
            ("upper links", b.checked_mul(4 * m)?),
            ("vectors", n.checked_mul(self.config.dim as u64)?.checked_mul(4)?),
            ("checksum", 32),
        ])
    }

    /// The file's size this header describes, or `None` when it overflows.
    fn file_bytes(&self) -> Option<u64> {
        self.sections()?.iter().try_fold(HEADER_BYTES, |sum, &(_, s)| sum.checked_add(s))
    }
}

impl VectorIndex {
    /// Writes the index, graph included, to `path` atomically, with a checksum (see the
    /// format in `index/snapshot.rs`).
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        let werr = |source| IndexError::Write { path: path.display().to_string(), source };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new().prefix(".index-").tempfile_in(dir).map_err(werr)?;
        {
            let mut w = HashWriter { out: BufWriter::with_capacity(64 << 10, tmp.as_file()), hash: Sha256::new() };
            self.write_to(&mut w).map_err(werr)?;
            let HashWriter { mut out, hash } = w;
            out.write_all(&hash.finalize()).map_err(werr)?;
            out.flush().map_err(werr)?;
        }
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(path).map_err(|e| werr(e.error))?;
        // the rename itself is durable only once the directory is synced
        #[cfg(unix)]
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
        Ok(())
    }

    fn write_to<W: Write>(&self, w: &mut HashWriter<W>) -> std::io::Result<()> {
        let g = &self.graph;
        let c = &self.config;
        let names = &self.strings.names;
        w.bytes(MAGIC)?;
        w.u32(VERSION)?;
        for x in [c.dim, c.max_connections, c.ef_construction, c.ef_search] {
            w.u32(u32_of(x))?;
        }
        let string_bytes: usize = names.iter().map(String::len).sum();
        for x in [self.slots.len(), self.live.len(), g.upper_len.len(), names.len(), string_bytes] {
            w.u64(x as u64)?;
        }
        w.u32(g.entry.unwrap_or(u32::MAX))?;
        w.u32(u32::from(g.max_level))?;
        w.u64(g.rng)?;

        w.words(&names.iter().map(|s| u32_of(s.len())).collect::<Vec<u32>>())?;
        for s in names {
            w.bytes(s.as_bytes())?;
        }
        w.words(&self.slots.iter().map(|s| s.id).collect::<Vec<u64>>())?;
        w.words(&self.slots.iter().flat_map(|s| [s.department, s.room, s.document]).collect::<Vec<u32>>())?;
        w.words(&self.slots.iter().map(|s| s.kind).collect::<Vec<u8>>())?;
        w.words(&self.slots.iter().map(|s| u8::from(s.alive)).collect::<Vec<u8>>())?;
        w.words(&g.levels)?;
        w.words(&g.len0)?;
        w.words(&g.upper_len)?;
        w.gather(g.len(), |n| g.link_slots(n))?;
        w.words(&g.upper_links)?;
        w.gather(g.len(), |n| g.vector(n as u32))
    }

    /// Reads a snapshot written by [`Self::save`]: the graph as saved, no rebuild.
    /// Anything wrong with the file (missing, truncated, corrupt, another version or
    /// dimension, an inconsistent graph) is an error, never a panic.
    pub fn load(path: &Path, expected_dim: usize) -> Result<VectorIndex, IndexError> {
        let bad = |message: String| IndexError::Snapshot { path: path.display().to_string(), message };
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
        let mut r = HashReader { inner: BufReader::new(file), hash: Sha256::new() };
        let io = |e: std::io::Error| bad(format!("cannot read: {e}"));

        let mut head = [0u8; HEADER_BYTES as usize];
        if size < 12 {
            return Err(bad("not an index snapshot".into()));
        }
        r.fill(&mut head[..12]).map_err(io)?;
        if &head[..8] != MAGIC {
            return Err(bad("not an index snapshot".into()));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!("format version {version}, this build reads {VERSION}: rebuild the index")));
        }
        if size < HEADER_BYTES {
            return Err(bad("truncated header".into()));
        }
        r.fill(&mut head[12..]).map_err(io)?;
        let header = read_header(&head[12..]).ok_or_else(|| bad("header numbers out of range".into()))?;
        let dim = header.config.dim;
        if dim != expected_dim {
            return Err(bad(format!("vectors have {dim} dimensions, expected {expected_dim}")));
        }
        match header.file_bytes() {
            Some(want) if want == size => {}
            want => {
                return Err(bad(format!(
                    "{size} bytes, the header describes {}: truncated or corrupt",
                    want.map_or("more than a file holds".to_string(), |w| w.to_string())
                )));
            }
        }

        // every length below was checked against the file's size: allocations are bounded
        let (n, blocks) = (header.nodes, header.blocks);
        let m = graph::links_per_level(header.config.max_connections);
        let lengths: Vec<u32> = r.words(header.strings).map_err(io)?;
        let text: Vec<u8> = r.words(header.string_bytes).map_err(io)?;
        let ids: Vec<u64> = r.words(n).map_err(io)?;
        let refs: Vec<u32> = r.words(3 * n).map_err(io)?;
        let kinds: Vec<u8> = r.words(n).map_err(io)?;
        let alive: Vec<u8> = r.words(n).map_err(io)?;
        let levels: Vec<u8> = r.words(n).map_err(io)?;
        let len0: Vec<u8> = r.words(n).map_err(io)?;
        let upper_len: Vec<u8> = r.words(blocks).map_err(io)?;
        let config = header.config;
        // the records are filled in place, so a load holds one copy of the vectors
        let mut graph = Graph::with_nodes(dim, config.max_connections, config.ef_construction, n);
        r.scatter(n, 2 * m, |i, slots| graph.set_link_slots(i, slots)).map_err(io)?;
        let upper_links: Vec<u32> = r.words(blocks * m).map_err(io)?;
        r.scatter(n, dim, |i, v| graph.set_vector(i, v)).map_err(io)?;
        let mut sum = [0u8; 32];
        r.inner.read_exact(&mut sum).map_err(io)?;
        if r.hash.finalize().as_slice() != sum {
            return Err(bad("checksum mismatch: the file is corrupt".into()));
        }

        let strings = interner(&lengths, text).map_err(&bad)?;
        let slots = slots(&ids, &refs, &kinds, &alive, strings.names.len()).map_err(&bad)?;
        let mut live = HashMap::with_capacity(header.live);
        for (i, s) in slots.iter().enumerate().filter(|(_, s)| s.alive) {
            if live.insert(s.id, i).is_some() {
                return Err(bad(format!("item {} is live twice", s.id)));
            }
        }
        if live.len() != header.live {
            return Err(bad(format!("{} live items, the header says {}", live.len(), header.live)));
        }
        let graph = graph
            .adopt(Parts {
                levels,
                len0,
                upper_links,
                upper_len,
                entry: header.entry,
                max_level: header.max_level,
                rng: header.rng,
            })
            .map_err(|e| bad(format!("inconsistent graph: {e}")))?;
        Ok(VectorIndex { config, graph, slots, live, strings })
    }
}

/// The header fields after magic and version; `None` when a count is past this
/// machine's `usize` or the top level past a `u8`.
fn read_header(b: &[u8]) -> Option<Header> {
    let mut f = Fields(b);
    let [dim, max_connections, ef_construction, ef_search] = [f.u32(), f.u32(), f.u32(), f.u32()].map(|x| x as usize);
    let mut count = || usize::try_from(f.u64()).ok();
    let (nodes, live, blocks, strings, string_bytes) = (count()?, count()?, count()?, count()?, count()?);
    let entry = Some(f.u32()).filter(|&e| e != u32::MAX);
    let max_level = u8::try_from(f.u32()).ok()?;
    let rng = f.u64();
    Some(Header {
        config: IndexConfig { dim, max_connections, ef_construction, ef_search, capacity_hint: nodes },
        nodes,
        live,
        blocks,
        strings,
        string_bytes,
        entry,
        max_level,
        rng,
    })
}

/// The interned strings, each distinct, from their lengths and bytes.
fn interner(lengths: &[u32], text: Vec<u8>) -> Result<Interner, String> {
    let text = String::from_utf8(text).map_err(|_| "a string is not UTF-8".to_string())?;
    let mut strings = Interner::default();
    let mut at = 0usize;
    for &len in lengths {
        let s = at
            .checked_add(len as usize)
            .and_then(|end| text.get(at..end))
            .ok_or("string lengths disagree with the string bytes")?;
        at += len as usize;
        if strings.intern(Some(s.to_string())) as usize != strings.names.len() - 1 {
            return Err(format!("string {s:?} is stored twice"));
        }
    }
    if at != text.len() {
        return Err("string lengths disagree with the string bytes".into());
    }
    Ok(strings)
}

/// The items, with every string number and code checked.
fn slots(ids: &[u64], refs: &[u32], kinds: &[u8], alive: &[u8], strings: usize) -> Result<Vec<Slot>, String> {
    let mut slots = Vec::with_capacity(ids.len());
    for (i, (((&id, r), &kind), &alive)) in ids.iter().zip(refs.chunks_exact(3)).zip(kinds).zip(alive).enumerate() {
        if let Some(&s) = r.iter().find(|&&s| s != NONE && s as usize >= strings) {
            return Err(format!("item {id} refers to string {s} of {strings}"));
        }
        if kind > 2 || alive > 1 {
            return Err(format!("slot {i} has kind {kind}, alive {alive}"));
        }
        slots.push(Slot { id, department: r[0], room: r[1], document: r[2], kind, alive: alive == 1 });
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_same_answers, meta, vectors};
    use super::*;

    const DIM: usize = 32;

    /// 2,000 items under a non-default configuration, 150 of them removed (tombstones,
    /// under the compaction share) and 20 replaced.
    fn index() -> VectorIndex {
        let config =
            IndexConfig { dim: DIM, max_connections: 8, ef_construction: 100, ef_search: 40, capacity_hint: 100 };
        let mut index = VectorIndex::new(config);
        let vs = vectors(2_000, DIM, 3);
        index.insert_batch(vs.iter().enumerate().map(|(i, v)| (i as u64, v.clone(), meta(i))).collect()).unwrap();
        for id in (500..1_250).step_by(5) {
            assert!(index.remove(id));
        }
        for (i, v) in vectors(20, DIM, 4).iter().enumerate() {
            index.insert(i as u64 * 7, v, meta(i + 1)).unwrap();
        }
        assert_eq!(index.slots.len(), 2_020);
        assert_eq!(index.len(), 1_850);
        index
    }

    fn saved(index: &VectorIndex) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hnsw");
        index.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (dir, path, bytes)
    }

    /// Where each section starts, by name, read from the file's own header.
    fn layout(bytes: &[u8]) -> HashMap<&'static str, usize> {
        let header = read_header(&bytes[12..HEADER_BYTES as usize]).unwrap();
        let mut at = HEADER_BYTES as usize;
        let mut starts = HashMap::new();
        for (name, size) in header.sections().unwrap() {
            starts.insert(name, at);
            at += size as usize;
        }
        assert_eq!(at, bytes.len());
        starts
    }

    /// Recomputes the checksum, so that a change reaches the consistency checks.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - 32;
        let sum = Sha256::digest(&bytes[..n]);
        bytes[n..].copy_from_slice(&sum);
    }

    fn load_bytes(bytes: &[u8]) -> Result<VectorIndex, IndexError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hnsw");
        std::fs::write(&path, bytes).unwrap();
        VectorIndex::load(&path, DIM)
    }

    fn put_u32(bytes: &mut [u8], at: usize, x: u32) {
        bytes[at..at + 4].copy_from_slice(&x.to_le_bytes());
    }

    #[test]
    fn a_loaded_index_is_the_saved_graph_and_grows_like_it() {
        let mut index = index();
        let (_dir, path, bytes) = saved(&index);
        let mut back = VectorIndex::load(&path, DIM).unwrap();

        // the graph itself, not a rebuild of it
        let (a, b) = (&index.graph, &back.graph);
        assert_eq!(a.levels, b.levels);
        assert_eq!(a.len0, b.len0);
        assert_eq!(a.words(), b.words(), "links and vectors");
        assert_eq!(a.upper_len, b.upper_len);
        assert_eq!(a.upper_links, b.upper_links);
        assert_eq!((a.entry, a.max_level, a.rng), (b.entry, b.max_level, b.rng));
        assert!(a.max_level > 0, "the test graph has upper levels");
        assert_eq!(IndexConfig { capacity_hint: 0, ..index.config }, IndexConfig { capacity_hint: 0, ..back.config });
        assert_eq!(back.slots.len(), 2_020);
        assert!(!back.contains(500) && back.contains(501) && back.contains(7));
        assert_eq!(bytes.len() as u64, read_header(&bytes[12..84]).unwrap().file_bytes().unwrap());

        let queries = vectors(30, DIM, 11);
        assert_same_answers(&index, &back, &queries);

        // inserts and removes after loading go as they would have without the save
        let more = vectors(300, DIM, 12);
        for (i, v) in more.iter().enumerate() {
            index.insert(10_000 + i as u64, v, meta(i)).unwrap();
            back.insert(10_000 + i as u64, v, meta(i)).unwrap();
        }
        for id in [1, 2, 10_003] {
            assert!(index.remove(id) && back.remove(id));
        }
        assert_eq!(index.graph.words(), back.graph.words());
        assert_same_answers(&index, &back, &queries);
    }

    #[test]
    fn an_empty_index_round_trips() {
        let index = VectorIndex::new(IndexConfig { dim: DIM, ..IndexConfig::default() });
        let (_dir, path, bytes) = saved(&index);
        assert_eq!(bytes.len() as u64, HEADER_BYTES + 32);
        let mut back = VectorIndex::load(&path, DIM).unwrap();
        assert!(back.is_empty());
        assert!(back.search(&[0.5; DIM], 3, None, &super::super::SearchFilter::default()).unwrap().is_empty());
        back.insert(9, &vectors(1, DIM, 1)[0], super::super::ItemMeta::default()).unwrap();
        assert_eq!(
            back.search(&vectors(1, DIM, 1)[0], 3, None, &super::super::SearchFilter::default()).unwrap()[0].id,
            9
        );
    }

    #[test]
    fn old_truncated_flipped_and_extended_snapshots_are_errors() {
        let (_dir, _path, bytes) = saved(&index());
        let err = |b: &[u8]| load_bytes(b).map(|_| ()).unwrap_err().to_string();

        // version 1: vectors and metadata only, as earlier builds wrote it
        let mut body = Vec::new();
        body.extend_from_slice(&(DIM as u32).to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        let mut v1 = [MAGIC.as_slice(), &1u32.to_le_bytes(), &body].concat();
        v1.extend_from_slice(&Sha256::digest(&body));
        assert!(err(&v1).contains("format version 1, this build reads 2"), "{}", err(&v1));

        // cut inside and at the edges of every section, and at a spread of other offsets
        let starts = layout(&bytes);
        let mut cuts: Vec<usize> = starts.values().flat_map(|&s| [s - 1, s, s + 1]).collect();
        cuts.extend([0, 5, 11, 12, 50, HEADER_BYTES as usize]);
        cuts.extend((0..bytes.len()).step_by(4_099));
        cuts.push(bytes.len() - 1);
        for cut in cuts {
            assert!(load_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(err(&longer).contains("header describes"), "{}", err(&longer));

        // a flipped bit anywhere in a section is caught by the checksum
        for (name, &at) in &starts {
            let mut b = bytes.clone();
            b[at + 1] ^= 0x10;
            assert!(err(&b).contains("checksum mismatch"), "{name}: {}", err(&b));
        }
        // and in the header by the size, dimension or checksum checks
        for at in 12..HEADER_BYTES as usize {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            assert!(load_bytes(&b).is_err(), "header byte {at}");
        }
    }

    #[test]
    fn inconsistent_graphs_and_items_are_errors() {
        let index = index();
        let (_dir, _path, bytes) = saved(&index);
        let starts = layout(&bytes);
        let n = index.slots.len();
        let g = &index.graph;
        let level0_node = g.levels.iter().position(|&l| l == 0).unwrap();
        // a block with links, and the level it is for
        let (block, level) = (0..g.upper_len.len())
            .find(|&b| g.upper_len[b] > 0)
            .map(|b| {
                let node = g.upper_at.iter().rposition(|&at| at as usize <= b).unwrap();
                (b, (b - g.upper_at[node] as usize + 1) as u8)
            })
            .unwrap();
        assert!(level >= 1);
        let node0_links = g.len0[0];
        assert!(node0_links > 0);

        let mut control = bytes.clone();
        reseal(&mut control);
        assert_eq!(control, bytes, "resealing an untouched file changes nothing");
        assert!(load_bytes(&control).is_ok());

        let starts = &starts;
        type Change<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "a level-0 link out of range",
                Box::new(move |b| put_u32(b, starts["level-0 links"], n as u32)),
                "out of range",
            ),
            ("too many level-0 links", Box::new(move |b| b[starts["level-0 link counts"]] = 17), "over 16"),
            (
                "an upper link to a node without that level",
                Box::new(move |b| put_u32(b, starts["upper links"] + block * 8 * 4, level0_node as u32)),
                "not on that level",
            ),
            (
                "an upper link out of range",
                Box::new(move |b| put_u32(b, starts["upper links"] + block * 8 * 4, u32::MAX - 1)),
                "not on that level",
            ),
            ("too many upper links", Box::new(move |b| b[starts["upper link counts"] + block] = 9), "over 8"),
            (
                "levels that need more blocks than stored",
                Box::new(move |b| b[starts["levels"] + level0_node] = 1),
                "upper link blocks",
            ),
            ("a level above the top", Box::new(move |b| b[starts["levels"] + level0_node] = 16), "above the top level"),
            ("an entry point out of range", Box::new(move |b| put_u32(b, 68, n as u32)), "entry point"),
            (
                "an entry point below the top level",
                Box::new(move |b| put_u32(b, 68, level0_node as u32)),
                "entry point",
            ),
            ("no entry point in a graph with nodes", Box::new(|b| put_u32(b, 68, u32::MAX)), "entry point"),
            ("a top level past the limit", Box::new(|b| put_u32(b, 72, 17)), "top level 17"),
            ("a zero level generator", Box::new(|b| b[76..84].fill(0)), "zero"),
            ("an unknown kind", Box::new(move |b| b[starts["kinds"] + 3] = 7), "kind 7"),
            ("an alive flag that is not 0 or 1", Box::new(move |b| b[starts["alive"] + 3] = 2), "alive 2"),
            ("a string number out of range", Box::new(move |b| put_u32(b, starts["filters"], 9_999)), "string 9999"),
            ("strings that are not UTF-8", Box::new(move |b| b[starts["strings"]] = 0xff), "UTF-8"),
            (
                "an id live twice",
                Box::new(move |b| b.copy_within(starts["ids"]..starts["ids"] + 8, starts["ids"] + 8)),
                "live twice",
            ),
            ("a wrong live count", Box::new(|b| b[36] ^= 1), "live items"),
            ("a wrong node count", Box::new(|b| b[28] ^= 1), "header describes"),
            (
                "a vector value that is not a number",
                Box::new(move |b| b[starts["vectors"]..starts["vectors"] + 4].copy_from_slice(&f32::NAN.to_le_bytes())),
                "finite",
            ),
        ];
        for (what, change, want) in cases {
            let mut b = bytes.clone();
            change(&mut b);
            assert_ne!(b, bytes, "{what}: the change changes the file");
            reseal(&mut b);
            let e = load_bytes(&b).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(want), "{what}: {e}");
        }
    }
}
