#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2, independent of troupe.

A from-scratch BERT forward pass in numpy (float64), reading the weights with
`safetensors.numpy`, then what the sentence-transformers modules of the model
say: mean pooling over the attention mask, then L2 normalisation. The
`tokenizers` package is used for tokenisation only, with truncation to
`max_seq_length` from sentence_bert_config.json (the tokenizer.json itself
says 128 and pads to 128; sentence-transformers overrides both, and so does
this script).

The output is inference/tests/data/minilm-reference.json, which the Rust
tests compare troupe's embedder against (cosine >= 0.99). Regenerate with:

    python3 -m venv target/minilm/venv
    target/minilm/venv/bin/pip install numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3
    target/minilm/venv/bin/python scripts/minilm-reference.py \
        "$(bash scripts/fetch-minilm.sh)" > inference/tests/data/minilm-reference.json
"""

import json
import math
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

REPO = "sentence-transformers/all-MiniLM-L6-v2"

LONG = " ".join(
    f"Paragraph {i}: the supervisor restarts a failed worker, replays the task "
    f"journal from the last checkpoint, and the director resumes planning."
    for i in range(30)
)

SENTENCES = [
    "Hello, world!",
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "Someone plays an instrument in front of an audience.",
    "The stock market fell sharply after the announcement.",
    "How do I reset my password?",
    "Rust's borrow checker enforces aliasing XOR mutability at compile time.",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{v:?}\"); }",
    "SELECT name, COUNT(*) FROM tasks WHERE state = 'done' GROUP BY name;",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Les élèves étudient à la bibliothèque jusqu'à minuit.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "I love pizza 🍕 and sushi 🍣!",
    "   leading and trailing whitespace   ",
    "e = mc^2, ∑_{i=1}^{n} i = n(n+1)/2",
    "",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 4,
    LONG,
]


def snapshot_dir(cache: pathlib.Path) -> pathlib.Path:
    repo = cache / ("models--" + REPO.replace("/", "--"))
    rev = (repo / "refs" / "main").read_text().strip()
    return repo / "snapshots" / rev


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


ERF = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    # The exact (erf) GELU, which is what BERT's "gelu" means.
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)).astype(np.float64))


class Bert:
    def __init__(self, directory: pathlib.Path):
        self.config = json.loads((directory / "config.json").read_text())
        weights = load_file(str(directory / "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in weights.items()}

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids):
        c, w = self.config, self.w
        eps = c["layer_norm_eps"]
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        heads = c["num_attention_heads"]
        d = c["hidden_size"] // heads
        for layer in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."
            q = self.linear(x, p + "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
            k = self.linear(x, p + "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
            v = self.linear(x, p + "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * d)
            attn = self.linear(ctx, p + "attention.output.dense")
            x = layer_norm(
                attn + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            h = gelu(self.linear(x, p + "intermediate.dense"))
            out = self.linear(h, p + "output.dense")
            x = layer_norm(
                out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps
            )
        return x


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: minilm-reference.py HF_CACHE_DIR (see scripts/fetch-minilm.sh)")
    directory = snapshot_dir(pathlib.Path(sys.argv[1]))
    st = json.loads((directory / "sentence_bert_config.json").read_text())
    pooling = json.loads((directory / "1_Pooling" / "config.json").read_text())
    modules = json.loads((directory / "modules.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not any(
        pooling[k] for k in pooling if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    ), "this reference implements mean pooling only"
    normalize = any(m["type"].endswith(".Normalize") for m in modules)

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=st["max_seq_length"])
    bert = Bert(directory)

    entries = []
    for text in SENTENCES:
        ids = tokenizer.encode(text).ids
        hidden = bert.forward(np.array(ids))
        # One sentence at a time, so every token is real: the masked mean is
        # the plain mean.
        vector = hidden.mean(0)
        if normalize:
            vector /= max(np.linalg.norm(vector), 1e-12)
        entries.append({"text": text, "tokens": len(ids), "embedding": [round(float(v), 7) for v in vector]})

    header = {
        "model": REPO,
        "generated_by": "scripts/minilm-reference.py (numpy float64 BERT, mean pooling, L2 normalise)",
        "command": "target/minilm/venv/bin/python scripts/minilm-reference.py "
        "\"$(bash scripts/fetch-minilm.sh)\" > inference/tests/data/minilm-reference.json",
        "max_seq_length": st["max_seq_length"],
        "normalize": normalize,
    }
    # One sentence per line keeps the file readable and its diffs small.
    out = sys.stdout
    out.write("{\n")
    for key, value in header.items():
        out.write(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},\n")
    out.write(' "sentences": [\n')
    lines = [json.dumps(e, ensure_ascii=False) for e in entries]
    out.write(",\n".join("  " + line for line in lines))
    out.write("\n ]\n}\n")

if __name__ == "__main__":
    main()
