#!/usr/bin/env bash
# troupe's continuous batching next to llama-batched-bench (built from the
# same vendored llama.cpp): the same model, threads, prompt and generation
# lengths, numbers of parallel sequences, batch sizes and KV cache per
# sequence. troupe runs `troupe bench batched` (concurrent requests through
# its engine); batched-bench decodes the same batch shapes directly.
#
# Usage: benches/batched-vs-batched-bench.sh MODEL.gguf
# Environment:
#   THREADS    CPU threads for both (default: physical cores)
#   NPP        prompt tokens per sequence (default 128)
#   NTG        generated tokens per sequence (default 128)
#   NPL        parallel sequences, comma-separated (default 1,4)
#   REPS       repetitions: troupe's -r, and that many batched-bench runs (default 3)
#   BENCH_OUT  output directory (default target/bench-out)
#   TROUPE     troupe binary (default target/release/troupe; not built here)
#   LLAMA_BATCHED_BENCH  (default target/llama-peers/bin/llama-batched-bench)
# Output: BENCH_OUT/batched/{troupe.json,batched-bench.jsonl,logs},
#         batched-comparison.{md,json} (the table is printed too).
set -euo pipefail
script=batched-vs-batched-bench
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)

[ $# -eq 1 ] || die "usage: $0 MODEL.gguf"
model=$1
[ -f "$model" ] || die "no model at $model"

threads=${THREADS:-$(physical_cores)}
npp=${NPP:-128}
ntg=${NTG:-128}
npl=${NPL:-1,4}
reps=${REPS:-3}
out_dir=${BENCH_OUT:-$root/target/bench-out}/batched
troupe=${TROUPE:-$root/target/release/troupe}
batched_bench=${LLAMA_BATCHED_BENCH:-$root/target/llama-peers/bin/llama-batched-bench}
[ -x "$troupe" ] || die "$troupe is missing (cargo build --release --bin troupe)"
[ -x "$batched_bench" ] || die "$batched_bench is missing (benches/build-llama-peers.sh llama-batched-bench)"
mkdir -p "$out_dir"

# The same KV cache per sequence on both sides: troupe's --ctx is per slot
# (one slot per sequence, slots = the largest npl), batched-bench's -c is
# the total. PP + TG + 1 rounded up to 256, troupe's own default.
max_npl=$(tr ',' '\n' <<<"$npl" | sort -n | tail -1)
per_slot=$(((npp + ntg + 1 + 255) / 256 * 256))
total_ctx=$((per_slot * max_npl))
# -b 2048 -ub 512: batched-bench's defaults; troupe's engine uses a physical
# batch of min(-b, 512) as well. Both clamp -b to the context size.
batch=2048

say "llama-batched-bench: $reps runs of -npp $npp -ntg $ntg -npl $npl -t $threads -c $total_ctx"
: >"$out_dir/batched-bench.jsonl"
for rep in $(seq "$reps"); do
  # -no-kvu: one KV stream per sequence, as troupe allocates its slots.
  "$batched_bench" -m "$model" -c "$total_ctx" -b "$batch" -ub 512 -npp "$npp" -ntg "$ntg" \
    -npl "$npl" -t "$threads" -no-kvu --output-format jsonl \
    >"$out_dir/batched-bench-$rep.out" 2>"$out_dir/batched-bench-$rep.log" ||
    { tail -20 "$out_dir/batched-bench-$rep.log" >&2; die "llama-batched-bench failed on $model"; }
  grep -h '^{' "$out_dir/batched-bench-$rep.out" "$out_dir/batched-bench-$rep.log" \
    >>"$out_dir/batched-bench.jsonl" || true
done
[ -s "$out_dir/batched-bench.jsonl" ] || die "llama-batched-bench printed no JSONL rows (see $out_dir/batched-bench-1.*)"

say "troupe bench batched: -r $reps --npp $npp --ntg $ntg --npl $npl -t $threads --ctx $per_slot"
"$troupe" bench batched -m "$model" -t "$threads" --npp "$npp" --ntg "$ntg" --npl "$npl" \
  -r "$reps" -b "$batch" --ctx "$per_slot" --json --out "$out_dir/troupe.json" \
  >/dev/null 2>"$out_dir/troupe.log" ||
  { tail -20 "$out_dir/troupe.log" >&2; die "troupe bench batched failed on $model"; }

python3 "$root/benches/compare_batched.py" "$out_dir/troupe.json" "$out_dir/batched-bench.jsonl" \
  --json "$out_dir/batched-comparison.json" | tee "$out_dir/batched-comparison.md"
