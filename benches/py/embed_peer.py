#!/usr/bin/env python3
"""sentence-transformers peer for `huddle-bench embed`: the same model, texts and
measurements as huddle's side, printed as JSON lines.

Usage: embed_peer.py MODEL_DIR TEXTS.json SINGLE_RUNS
"""
import json, sys, time

import torch
from sentence_transformers import SentenceTransformer

model_dir, texts_path, single_runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = json.load(open(texts_path))
torch.set_num_threads(2)
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=32)  # warm up
for batch in (1, 32):
    started = time.perf_counter()
    model.encode(texts, batch_size=batch, normalize_embeddings=True)
    elapsed = time.perf_counter() - started
    print(json.dumps({"metric": f"batch{batch}_texts_per_s", "value": len(texts) / elapsed}), flush=True)
lat = []
for i in range(single_runs):
    t = texts[i % len(texts)]
    started = time.perf_counter()
    model.encode([t], batch_size=1, normalize_embeddings=True)
    lat.append(time.perf_counter() - started)
lat.sort()
print(json.dumps({"metric": "single_p50_ms", "value": lat[len(lat) // 2] * 1000}), flush=True)
print(json.dumps({"metric": "single_p95_ms", "value": lat[int(len(lat) * 0.95)] * 1000}), flush=True)
