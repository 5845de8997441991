#!/usr/bin/env bash
# troupe's inference speed next to llama-bench's, on the same synthetic models,
# threads and token counts, run back to back: prompt processing (pp512),
# generation (tg128) and troupe's JSON-Schema-constrained generation.
#
# Builds troupe (release) and, when missing, the llama.cpp peers
# (benches/build-llama-peers.sh: the same vendored llama.cpp, same CPU flags),
# writes the synthetic models, runs both, then benches/compare_inference.py.
#
# Usage: benches/inference-vs-llama-bench.sh
# Environment:
#   THREADS         CPU threads for both (default: number of physical cores)
#   REPS            repetitions per test (default 5)
#   BENCH_OUT       output directory     (default target/bench-out)
#   PEER_BUILD_DIR  where the peers are  (default target/llama-peers)
# Output: BENCH_OUT/{llama-bench,troupe}-<tag>.json, logs, comparison.{md,json}
set -euo pipefail
script=inference-vs-llama-bench
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${BENCH_OUT:-$root/target/bench-out}
peer_dir=${PEER_BUILD_DIR:-$root/target/llama-peers}
reps=${REPS:-5}
n_prompt=512
n_gen=128


threads=${THREADS:-$(physical_cores)}

mkdir -p "$out_dir"

say "building troupe (release; log: $out_dir/cargo-build.log)"
cargo build --release --bin troupe --manifest-path "$root/Cargo.toml" \
  >"$out_dir/cargo-build.log" 2>&1 ||
  { tail -30 "$out_dir/cargo-build.log" >&2; die "cargo build --release --bin troupe failed"; }
troupe=$root/target/release/troupe
[ -x "$troupe" ] || die "$troupe is missing after the build"

llama_bench=$peer_dir/bin/llama-bench
if [ ! -x "$llama_bench" ]; then
  say "llama.cpp peers missing; building them (several minutes)"
  PEER_BUILD_DIR=$peer_dir "$root/benches/build-llama-peers.sh" >/dev/null ||
    die "benches/build-llama-peers.sh failed"
fi
[ -x "$llama_bench" ] || die "$llama_bench is missing after building the peers"

# tag shape quant
models=(
  "small-q8_0 small q8_0"
  "1b-q4_0 1b q4_0"
)

{
  echo "date: $(date -u +%FT%TZ)"
  echo "threads: $threads  reps: $reps  n_prompt: $n_prompt  n_gen: $n_gen"
  echo "troupe: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "llama-bench: $llama_bench"
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|Flags)' || true
} >"$out_dir/environment.txt"

for entry in "${models[@]}"; do
  read -r tag shape quant <<<"$entry"
  model=$out_dir/$tag.gguf
  if [ ! -f "$model" ]; then
    say "writing synthetic model $model"
    "$troupe" models synth --out "$model" --shape "$shape" --quant "$quant" \
      >"$out_dir/synth-$tag.log" 2>&1 ||
      { tail -20 "$out_dir/synth-$tag.log" >&2; die "troupe models synth failed for $tag"; }
  fi

  say "$tag: llama-bench (-t $threads -p $n_prompt -n $n_gen -r $reps)"
  "$llama_bench" -m "$model" -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" -o json \
    >"$out_dir/llama-bench-$tag.json" 2>"$out_dir/llama-bench-$tag.log" ||
    { tail -20 "$out_dir/llama-bench-$tag.log" >&2; die "llama-bench failed on $model"; }

  say "$tag: troupe bench inference (-t $threads -p $n_prompt -n $n_gen -r $reps)"
  "$troupe" bench inference -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r "$reps" \
    --json --out "$out_dir/troupe-$tag.json" \
    >"$out_dir/troupe-$tag.stdout" 2>"$out_dir/troupe-$tag.log" ||
    { tail -20 "$out_dir/troupe-$tag.log" >&2; die "troupe bench inference failed on $model"; }
done

python3 "$root/benches/compare_inference.py" "$out_dir" --json "$out_dir/comparison.json" |
  tee "$out_dir/comparison.md"
