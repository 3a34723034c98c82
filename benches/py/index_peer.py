#!/usr/bin/env python3
"""hnswlib and faiss peers for `huddle-bench index`: build an HNSW index over the same
vectors with the same M and ef_construction, one thread, and measure build time, memory,
recall@10 and queries/s at each ef. Prints JSON lines.

Usage: index_peer.py VECTORS.f32 QUERIES.f32 TRUTH.u32 DIM M EF_CONSTRUCTION EF1,EF2,...
"""
import json, resource, sys, time

import numpy as np

vec_path, q_path, truth_path = sys.argv[1:4]
dim, m, efc = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
efs = [int(x) for x in sys.argv[7].split(",")]
data = np.fromfile(vec_path, dtype="<f4").reshape(-1, dim)
queries = np.fromfile(q_path, dtype="<f4").reshape(-1, dim)
truth = np.fromfile(truth_path, dtype="<u4").reshape(len(queries), -1)[:, :10]


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def recall(found):
    return float(np.mean([len(set(f[:10]) & set(t)) / 10 for f, t in zip(found, truth)]))


def emit(peer, metric, value, **extra):
    print(json.dumps({"peer": peer, "metric": metric, "value": value, **extra}), flush=True)


try:
    import hnswlib
    before = rss()
    idx = hnswlib.Index(space="ip", dim=dim)
    idx.init_index(max_elements=len(data), M=m, ef_construction=efc)
    idx.set_num_threads(1)
    t = time.perf_counter()
    idx.add_items(data, np.arange(len(data)))
    emit("hnswlib", "build_s", time.perf_counter() - t)
    emit("hnswlib", "rss_bytes", rss() - before)
    for ef in efs:
        idx.set_ef(max(ef, 10))
        labels, _ = idx.knn_query(queries, k=10)
        done, t = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - t < 1.0:
            idx.knn_query(queries, k=10)
            done += len(queries)
        el = time.perf_counter() - t
        emit("hnswlib", "qps", done / el, ef=ef, recall=recall(labels))
    del idx
except ImportError as e:
    emit("hnswlib", "unavailable", 0, error=str(e))

try:
    import faiss
    faiss.omp_set_num_threads(1)
    before = rss()
    idx = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    idx.hnsw.efConstruction = efc
    t = time.perf_counter()
    idx.add(data)
    emit("faiss", "build_s", time.perf_counter() - t)
    emit("faiss", "rss_bytes", rss() - before)
    for ef in efs:
        idx.hnsw.efSearch = max(ef, 10)
        _, labels = idx.search(queries, 10)
        done, t = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - t < 1.0:
            idx.search(queries, 10)
            done += len(queries)
        el = time.perf_counter() - t
        emit("faiss", "qps", done / el, ef=ef, recall=recall(labels))
except ImportError as e:
    emit("faiss", "unavailable", 0, error=str(e))
