#!/usr/bin/env bash
# troupe's continuous batching next to llama-batched-bench (built from the
# same vendored llama.cpp): the same model, threads, prompt and generation
# lengths, numbers of parallel sequences, batch sizes and KV cache per
# sequence. troupe runs `troupe bench batched` (concurrent requests through
# its engine); batched-bench decodes the same batch shapes directly.
#
# The two sides take turns, round by round: this machine's speed drifts by
# tens of percent within minutes, and a drift then falls on both sides alike
# instead of on whichever ran second. Odd rounds run batched-bench first,
# even rounds troupe first, so neither always gets the warmer (or cooler)
# slot. compare_batched.py reports medians over rounds and the per-round
# ratios.
#
# Usage: benches/batched-vs-batched-bench.sh MODEL.gguf
# Environment:
#   THREADS    CPU threads for both (default: physical cores)
#   NPP        prompt tokens per sequence (default 128)
#   NTG        generated tokens per sequence (default 128)
#   NPL        parallel sequences, comma-separated (default 1,4)
#   ROUNDS     rounds; each runs batched-bench once and troupe once (-r 1)
#              (default 5; REPS is read as an older name for it)
#   BENCH_OUT  output directory (default target/bench-out)
#   TROUPE     troupe binary (default target/release/troupe; not built here)
#   LLAMA_BATCHED_BENCH  (default target/llama-peers/bin/llama-batched-bench)
# Output: BENCH_OUT/batched/{troupe-R.json,batched-bench-R.jsonl,logs} per
#         round R, batched-comparison.{md,json} (the table is printed too).
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
rounds=${ROUNDS:-${REPS:-5}}
out_dir=${BENCH_OUT:-$root/target/bench-out}/batched
troupe=${TROUPE:-$root/target/release/troupe}
batched_bench=${LLAMA_BATCHED_BENCH:-$root/target/llama-peers/bin/llama-batched-bench}
[ -x "$troupe" ] || die "$troupe is missing (cargo build --release --bin troupe)"
[ -x "$batched_bench" ] || die "$batched_bench is missing (benches/build-llama-peers.sh llama-batched-bench)"
[ "$rounds" -ge 1 ] 2>/dev/null || die "ROUNDS must be a whole number of at least 1, not '$rounds'"
mkdir -p "$out_dir"
# Files of an earlier run with more rounds must not join this one's.
rm -f "$out_dir"/troupe-*.json "$out_dir"/troupe-*.log "$out_dir"/batched-bench-*.{jsonl,out,log} \
  "$out_dir/troupe.json" "$out_dir/batched-bench.jsonl"

# The same KV cache per sequence on both sides: troupe's --ctx is per slot
# (one slot per sequence, slots = the largest npl), batched-bench's -c is
# the total. PP + TG + 1 rounded up to 256, troupe's own default.
max_npl=$(tr ',' '\n' <<<"$npl" | sort -n | tail -1)
per_slot=$(((npp + ntg + 1 + 255) / 256 * 256))
total_ctx=$((per_slot * max_npl))
# -b 2048 -ub 512: batched-bench's defaults; troupe's engine uses a physical
# batch of min(-b, 512) as well. Both clamp -b to the context size.
batch=2048

# run_peer ROUND: one batched-bench run; its JSONL rows (one per npl) go to
# batched-bench-ROUND.jsonl.
run_peer() {
  local r=$1
  # -no-kvu: one KV stream per sequence, as troupe allocates its slots.
  "$batched_bench" -m "$model" -c "$total_ctx" -b "$batch" -ub 512 -npp "$npp" -ntg "$ntg" \
    -npl "$npl" -t "$threads" -no-kvu --output-format jsonl \
    >"$out_dir/batched-bench-$r.out" 2>"$out_dir/batched-bench-$r.log" ||
    { tail -20 "$out_dir/batched-bench-$r.log" >&2; die "llama-batched-bench failed on $model (round $r)"; }
  grep -h '^{' "$out_dir/batched-bench-$r.out" "$out_dir/batched-bench-$r.log" \
    >"$out_dir/batched-bench-$r.jsonl" ||
    die "llama-batched-bench printed no JSONL rows (see $out_dir/batched-bench-$r.*)"
}

# run_troupe ROUND: one repetition of each case (after troupe's own warm-up).
run_troupe() {
  local r=$1
  "$troupe" bench batched -m "$model" -t "$threads" --npp "$npp" --ntg "$ntg" --npl "$npl" \
    -r 1 -b "$batch" --ctx "$per_slot" --json --out "$out_dir/troupe-$r.json" \
    >/dev/null 2>"$out_dir/troupe-$r.log" ||
    { tail -20 "$out_dir/troupe-$r.log" >&2; die "troupe bench batched failed on $model (round $r)"; }
}

# Read the model once so that the first round's first side does not pay
# for the disk alone.
cat "$model" >/dev/null

say "$rounds rounds, alternating; llama-batched-bench -npp $npp -ntg $ntg -npl $npl -t $threads -c $total_ctx;" \
  "troupe bench batched -r 1 --ctx $per_slot"
troupe_files=()
peer_files=()
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    say "round $r/$rounds: llama-batched-bench, then troupe"
    run_peer "$r"
    run_troupe "$r"
  else
    say "round $r/$rounds: troupe, then llama-batched-bench"
    run_troupe "$r"
    run_peer "$r"
  fi
  troupe_files+=("$out_dir/troupe-$r.json")
  peer_files+=("$out_dir/batched-bench-$r.jsonl")
done

python3 "$root/benches/compare_batched.py" --troupe "${troupe_files[@]}" --peer "${peer_files[@]}" \
  --json "$out_dir/batched-comparison.json" | tee "$out_dir/batched-comparison.md"
