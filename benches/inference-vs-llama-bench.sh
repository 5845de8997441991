#!/usr/bin/env bash
# troupe's inference speed next to llama-bench's, on the same models,
# threads and token counts: prompt processing (pp512), generation (tg128)
# and troupe's JSON-Schema-constrained generation. The two run in
# alternating rounds (llama-bench first in odd rounds, troupe first in even
# ones), so that a machine getting faster or slower over the run weighs on
# both alike; every round's samples are pooled per side.
#
# Models: the two real ones (scripts/fetch-models.sh): SmolLM2-135M-Instruct
# Q4_1 (49k vocabulary) and Gemma 3 270M Q4_K_M (262k vocabulary); with
# SYNTHETIC=1 also the synthetic small-q8_0 and 1b-q4_0.
#
# Builds troupe (release) and, when missing, the llama.cpp peers
# (benches/build-llama-peers.sh: the same vendored llama.cpp, same CPU flags
# and fixes), runs both, then benches/compare_inference.py.
#
# Usage: benches/inference-vs-llama-bench.sh
# Environment:
#   THREADS         CPU threads for both (default: number of physical cores)
#   ROUNDS          alternating rounds   (default 3)
#   REPS            repetitions per test per round (default 3)
#   BENCH_OUT       output directory     (default target/bench-out)
#   PEER_BUILD_DIR  where the peers are  (default target/llama-peers)
#   ONLY            run only the models whose tag contains this (e.g. gemma)
#   TROUPE          a troupe already built (e.g. the portable one,
#                   scripts/build-portable.sh); default: build target/release
# Output: BENCH_OUT/{llama-bench,troupe}-<tag>.json (pooled rounds), logs,
# comparison.{md,json}
set -euo pipefail
script=inference-vs-llama-bench
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${BENCH_OUT:-$root/target/bench-out}
peer_dir=${PEER_BUILD_DIR:-$root/target/llama-peers}
reps=${REPS:-3}
rounds=${ROUNDS:-3}
n_prompt=512
n_gen=128


threads=${THREADS:-$(physical_cores)}

mkdir -p "$out_dir"

release_troupe

llama_bench=$peer_dir/bin/llama-bench
if [ ! -x "$llama_bench" ]; then
  say "llama.cpp peers missing; building them (several minutes)"
  PEER_BUILD_DIR=$peer_dir "$root/benches/build-llama-peers.sh" >/dev/null ||
    die "benches/build-llama-peers.sh failed"
fi
[ -x "$llama_bench" ] || die "$llama_bench is missing after building the peers"

# tag path (real models), then tag shape quant (synthetic ones)
real_dir=$(bash "$root/scripts/fetch-models.sh")
models=(
  "smollm2-135m-q4_1 $real_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
  "gemma3-270m-q4_k_m $real_dir/gemma-3-270m-q4_k_m.gguf"
)
synthetic=()
if [ "${SYNTHETIC:-0}" = 1 ]; then
  synthetic=("small-q8_0 small q8_0" "1b-q4_0 1b q4_0")
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "threads: $threads  rounds: $rounds  reps per round: $reps  n_prompt: $n_prompt  n_gen: $n_gen"
  echo "troupe: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "llama-bench: $llama_bench"
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|Flags)' || true
} >"$out_dir/environment.txt"

for entry in "${synthetic[@]}"; do
  read -r tag shape quant <<<"$entry"
  model=$out_dir/$tag.gguf
  if [ ! -f "$model" ]; then
    say "writing synthetic model $model"
    "$troupe" models synth --out "$model" --shape "$shape" --quant "$quant" \
      >"$out_dir/synth-$tag.log" 2>&1 ||
      { tail -20 "$out_dir/synth-$tag.log" >&2; die "troupe models synth failed for $tag"; }
  fi
  models+=("$tag $model")
done

run_llama_bench() { # tag model round
  "$llama_bench" -m "$2" -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" -o json \
    >"$out_dir/rounds/llama-bench-$1-$3.json" 2>"$out_dir/rounds/llama-bench-$1-$3.log" ||
    { tail -20 "$out_dir/rounds/llama-bench-$1-$3.log" >&2; die "llama-bench failed on $2"; }
}
run_troupe() { # tag model round
  "$troupe" bench inference -m "$2" -t "$threads" -p "$n_prompt" -n "$n_gen" -r "$reps" \
    --json --out "$out_dir/rounds/troupe-$1-$3.json" \
    >"$out_dir/rounds/troupe-$1-$3.stdout" 2>"$out_dir/rounds/troupe-$1-$3.log" ||
    { tail -20 "$out_dir/rounds/troupe-$1-$3.log" >&2; die "troupe bench inference failed on $2"; }
}

if [ -n "${ONLY:-}" ]; then
  kept=()
  for entry in "${models[@]}"; do
    case ${entry%% *} in *"$ONLY"*) kept+=("$entry") ;; esac
  done
  [ ${#kept[@]} -gt 0 ] || die "ONLY=$ONLY matches no model"
  models=("${kept[@]}")
  rm -f "$out_dir"/llama-bench-*"$ONLY"*.json "$out_dir"/troupe-*"$ONLY"*.json
else
  rm -f "$out_dir"/llama-bench-*.json "$out_dir"/troupe-*.json
fi
rm -rf "$out_dir/rounds"
mkdir -p "$out_dir/rounds"
for entry in "${models[@]}"; do
  read -r tag model <<<"$entry"
  for round in $(seq "$rounds"); do
    say "$tag: round $round of $rounds (-t $threads -p $n_prompt -n $n_gen -r $reps)"
    if [ $((round % 2)) = 1 ]; then
      run_llama_bench "$tag" "$model" "$round"
      run_troupe "$tag" "$model" "$round"
    else
      run_troupe "$tag" "$model" "$round"
      run_llama_bench "$tag" "$model" "$round"
    fi
  done
  python3 "$root/benches/pool_rounds.py" "$out_dir/rounds" "$tag" "$out_dir"
done

python3 "$root/benches/compare_inference.py" "$out_dir" --json "$out_dir/comparison.json" |
  tee "$out_dir/comparison.md"
