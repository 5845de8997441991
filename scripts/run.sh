#!/usr/bin/env bash
# Sets up a fresh machine and runs troupe's main job. Until the agent runtime
# lands, the main job is the model host's core: write a synthetic model (no
# download is possible offline), show what troupe knows about it, and generate
# from it — free text, then JSON constrained by a schema — with usage and
# timings on stderr. Pass a model name or path as $1 to use a real one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked --bin troupe
troupe=target/release/troupe
model=${1:-}
if [ -z "$model" ]; then
  model=target/demo/troupe-small-q8_0.gguf
  mkdir -p target/demo
  [ -f "$model" ] || "$troupe" models synth --out "$model" --shape small --quant q8_0
fi
"$troupe" models show "$model"
"$troupe" generate -m "$model" --chat -n 48 --seed 1 "Plan a three-step job."
cat > target/demo/action.schema.json <<'JSON'
{"type":"object","properties":{"tool":{"type":"string","enum":["read_file","write_file","shell"]},"args":{"type":"object","properties":{"path":{"type":"string","maxLength":40}},"required":["path"]}},"required":["tool","args"]}
JSON
"$troupe" generate -m "$model" --chat -n 96 --seed 1 --json-schema target/demo/action.schema.json "Pick a tool."
