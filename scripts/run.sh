#!/usr/bin/env bash
# Sets up a fresh machine and runs troupe's main job: a plain-language job
# ("write a Python fibonacci function with tests") planned by the Director,
# done by Workers with real tools in a git workspace, and answered.
#
#   bash scripts/run.sh            # replayed model outputs (no model needed)
#   bash scripts/run.sh MODEL      # a real GGUF model (catalog name or path)
#
# No model can be downloaded on an offline machine, and a synthetic model's
# random weights cannot plan, so by default the model outputs are replayed
# from examples/fib-script.json by the scripted backend. Everything else is
# the real thing: the actors, the store, the tools (the tests really run),
# the journal and the git checkpoints. Give a model to run it for real.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked --bin troupe
troupe=$PWD/target/release/troupe
demo=$PWD/target/demo
job="write a Python fibonacci function with tests"
mkdir -p "$demo/models"
rm -rf "$demo/data"
model=${1:-}
if [ -z "$model" ]; then
  [ -f "$demo/models/small.gguf" ] ||
    "$troupe" models synth --out "$demo/models/small.gguf" --shape tiny --quant q8_0
  cat > "$demo/troupe.toml" <<TOML
data_dir = "data"
[models]
dirs = ["models"]
[inference]
backend = "scripted"
script = "$PWD/examples/fib-script.json"
[agents]
model = "small"
progress_interval_s = 2
[approval]
execute = "allow"
TOML
  echo "== scripted demo: model outputs are replayed from examples/fib-script.json"
else
  cat > "$demo/troupe.toml" <<TOML
data_dir = "data"
[agents]
model = "$model"
[approval]
execute = "allow"
TOML
fi
"$troupe" --config "$demo/troupe.toml" run "$job"
id=$("$troupe" --config "$demo/troupe.toml" tasks list | awk '/^t-/ {print $1}' | tail -n 1)
"$troupe" --config "$demo/troupe.toml" tasks show "$id"
"$troupe" --config "$demo/troupe.toml" tasks log "$id"
echo "== the workspace ($demo/data/workspaces/$id): files and checkpoints"
git -C "$demo/data/workspaces/$id" log --oneline
(cd "$demo/data/workspaces/$id/src" 2>/dev/null && python3 -m unittest -v 2>&1 | tail -n 3) || true
