#!/usr/bin/env python3
"""Reference embeddings of all-MiniLM-L6-v2, computed without candle: the BERT forward pass
written out in numpy from the model's safetensors (the tokenizer is the model's own
tokenizer.json, through the `tokenizers` package), then mean pooling and unit length as
sentence-transformers does. The semantic cache's test compares the gateway's local embedder
with these vectors (cosine >= 0.999): tests/fixtures/semantic/reference.json.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy tokenizers safetensors
    /tmp/ref/bin/python scripts/reference-embeddings.py "$(scripts/fetch-model.sh)" \
        > tests/fixtures/semantic/reference.json
"""

import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "How do I reset my password?",
    "What is our refund policy for orders under $50?",
    "Convert 100 Fahrenheit to Celsius",
    "Sehr geehrte Damen und Herren, bitte prüfen Sie die Lieferung.",
    "请帮我把下面这段话改写得更正式一些。",
]


def main(model_dir):
    config = json.load(open(f"{model_dir}/config.json"))
    weights = load_file(f"{model_dir}/model.safetensors")
    prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""
    w = lambda name: weights[prefix + name].astype(np.float64)
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    heads = config["num_attention_heads"]
    eps = config.get("layer_norm_eps", 1e-12)
    erf = np.vectorize(math.erf)

    def norm(x, name):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * w(name + ".weight") + w(name + ".bias")

    def dense(x, name):
        return x @ w(name + ".weight").T + w(name + ".bias")

    out = []
    for text in SENTENCES:
        ids = tok.encode(text).ids
        n = len(ids)
        h = w("embeddings.word_embeddings.weight")[ids] + w("embeddings.position_embeddings.weight")[:n]
        h = h + w("embeddings.token_type_embeddings.weight")[0]
        h = norm(h, "embeddings.LayerNorm")
        for layer in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."
            d = h.shape[1] // heads
            q, k, v = (dense(h, p + f"attention.self.{x}").reshape(n, heads, d).transpose(1, 0, 2) for x in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(n, heads * d)
            h = norm(dense(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
            i = dense(h, p + "intermediate.dense")
            i = 0.5 * i * (1.0 + erf(i / math.sqrt(2.0)))
            h = norm(dense(i, p + "output.dense") + h, p + "output.LayerNorm")
        vec = h.mean(0)
        vec /= np.linalg.norm(vec)
        out.append({"text": text, "vector": [round(float(x), 7) for x in vec]})
    json.dump({"model": "all-MiniLM-L6-v2", "made_by": "scripts/reference-embeddings.py", "sentences": out}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
