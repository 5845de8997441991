#!/usr/bin/env bash
# The speed targets of the model-host issue, measured in one run:
#   1. model switching: requests alternating between two resident models
#      (no load), a first
#      load (cold when the page cache could be emptied for the file), the
#      reload of a model evicted a moment ago, and llama-server's own load of
#      the same file, warm and cold;
#   2. 4 concurrent sequences: `troupe bench batched` against
#      llama-batched-bench (benches/batched-vs-batched-bench.sh);
#   3. HTTP: `troupe serve` against llama-server, same client
#      (benches/serve-vs-llama-server.sh).
# Builds troupe (release) and, when missing, the llama.cpp peers; writes the
# synthetic models when missing; writes BENCH_OUT/issue3-comparison.md.
#
# Usage: benches/issue3.sh
# Environment:
#   THREADS    CPU threads everywhere (default: physical cores)
#   REPS       repetitions (default 3): swap cycles, batched reps, HTTP rounds
#   SHAPE      synthetic model shape (default small); A is q8_0, B is q4_0
#   NPP NTG    batched prompt / generation tokens (default 128 / 128)
#   MAX_TOKENS HTTP tokens per request (default 128)
#   BENCH_OUT  output directory (default target/bench-out)
#   TROUPE     use this troupe binary and skip the cargo build
#   PEER_BUILD_DIR  where the peers are (default target/llama-peers)
set -euo pipefail
script=issue3
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${BENCH_OUT:-$root/target/bench-out}
peer_dir=${PEER_BUILD_DIR:-$root/target/llama-peers}
reps=${REPS:-3}
shape=${SHAPE:-small}

threads=${THREADS:-$(physical_cores)}
mkdir -p "$out_dir"

release_troupe
troupe=$(realpath "$troupe")

for tool in llama-batched-bench llama-server; do
  if [ ! -x "$peer_dir/bin/$tool" ]; then
    say "$tool missing; building the llama.cpp peers (several minutes)"
    PEER_BUILD_DIR=$peer_dir "$root/benches/build-llama-peers.sh" >/dev/null ||
      die "benches/build-llama-peers.sh failed"
  fi
done
llama_server=$peer_dir/bin/llama-server

model_a=$out_dir/$shape-q8_0.gguf
model_b=$out_dir/$shape-q4_0.gguf
for entry in "$model_a q8_0" "$model_b q4_0"; do
  read -r path quant <<<"$entry"
  if [ ! -f "$path" ]; then
    say "writing synthetic model $path"
    "$troupe" models synth --out "$path" --shape "$shape" --quant "$quant" \
      >"$out_dir/synth-$(basename "$path" .gguf).log" 2>&1 ||
      die "troupe models synth failed for $path"
  fi
done

{
  echo "date: $(date -u +%FT%TZ)"
  echo "threads: $threads  reps: $reps  shape: $shape"
  echo "troupe: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown) ($troupe)"
  echo "peers: $peer_dir/bin"
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)' || true
} >"$out_dir/issue3-environment.txt"

# ---- 1. switching -----------------------------------------------------------
swap_dir=$out_dir/swap
mkdir -p "$swap_dir"

# Drops FILE's pages from the page cache (posix_fadvise DONTNEED: no root
# needed, other files untouched); prints the bytes still resident after.
evict_from_page_cache() {
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$1"
  resident_bytes "$1"
}
resident_bytes() {
  if command -v fincore >/dev/null; then
    fincore -b -n -o RES "$1" | tr -d ' '
  else
    echo unknown
  fi
}

resident_a=$(evict_from_page_cache "$model_a")
resident_b=$(evict_from_page_cache "$model_b")
say "swap: page cache emptied for A and B (resident bytes left: $resident_a, $resident_b)"
"$troupe" bench swap -m "$model_a" -m "$model_b" -t "$threads" -r "$reps" \
  --json --out "$swap_dir/troupe-swap.json" >/dev/null 2>"$swap_dir/troupe-swap.log" ||
  { tail -20 "$swap_dir/troupe-swap.log" >&2; die "troupe bench swap failed"; }

trap stop_server EXIT
trap 'exit 130' INT TERM

# llama-server's load of A: from spawn to /health 200, and its own log from
# "loading model" to "model loaded". --no-warmup: troupe decodes nothing at
# load either. One slot, 512 tokens: what `troupe bench swap` loads.
llama_server_load() {
  local tag=$1 port log launched pid health
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log=$swap_dir/llama-server-$tag.log
  # http_load.py spawns the server itself, so the time to /health counts
  # from the spawn and not from a poller's own start-up.
  launched=$(python3 "$root/benches/http_load.py" launch --log "$log" "http://127.0.0.1:$port" -- \
    "$llama_server" -m "$model_a" --host 127.0.0.1 --port "$port" -np 1 -c 512 -t "$threads" \
    -no-kvu --no-webui --no-warmup --log-colors off --log-timestamps) ||
    { tail -20 "$log" >&2; die "llama-server did not start (log: $log)"; }
  read -r pid health <<<"$launched"
  server_pid=$pid
  stop_server
  # Log times are minutes.seconds.milliseconds.microseconds since start.
  python3 -c 'import json, re, sys
def at(line):
    m, s, ms, us = (int(x) for x in line.split()[0].split("."))
    return ((m * 60 + s) * 1000 + ms) + us / 1000
start = end = None
for line in open(sys.argv[1], errors="replace"):
    if re.search(r"load_model: loading model", line):
        start = at(line)
    elif re.search(r"model loaded", line) and start is not None and end is None:
        end = at(line)
print(json.dumps({"tag": sys.argv[2], "health_s": float(sys.argv[3]),
                  "load_ms": None if start is None or end is None else end - start}))' \
    "$log" "$tag" "$health"
}
say "swap: llama-server loads of A ($reps warm, 1 cold)"
: >"$swap_dir/llama-server-loads.jsonl"
for rep in $(seq "$reps"); do
  llama_server_load "warm$rep" >>"$swap_dir/llama-server-loads.jsonl"
done
resident_cold=$(evict_from_page_cache "$model_a")
llama_server_load cold >>"$swap_dir/llama-server-loads.jsonl"

swap_md=$swap_dir/swap-comparison.md
python3 - "$swap_dir/troupe-swap.json" "$swap_dir/llama-server-loads.jsonl" \
  "$resident_a" "$resident_cold" >"$swap_md" <<'EOF'
import json, statistics, sys
t = json.load(open(sys.argv[1]))
loads = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
warm = [l for l in loads if l["tag"].startswith("warm")]
cold = [l for l in loads if l["tag"] == "cold"]
def avg(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else float("nan")
def cache_note(left):
    if left == "unknown":
        return "page cache emptied with posix_fadvise; fincore missing, residency not checked"
    if left == "0":
        return "cold: 0 bytes of the file in the page cache before"
    return f"NOT fully cold: {left} bytes still in the page cache before"
ls_warm_load, ls_warm_health = avg([l["load_ms"] for l in warm]), avg([l["health_s"] * 1e3 for l in warm])
ls_cold_load = avg([l["load_ms"] for l in cold])
ls_cold_health = avg([l["health_s"] * 1e3 for l in cold])
reload = t["reload_ms"]["avg"]
print(f"A = {t['model_a']}, B = {t['model_b']}; {t['ctx_per_slot']} tokens × {t['slots']} slot, "
      f"threads {t['threads']}, {t['reps']} reps")
print()
print("| step | troupe ms | llama-server ms | note |")
print("|---|---:|---:|---|")
print(f"| request switching between resident A and B (1 prompt + 1 generated token) | "
      f"{t['switch_request_ms']['avg']:.2f} ± {t['switch_request_ms']['stddev']:.2f} | — | "
      f"loads during these requests: {t['switch_loads']} (asserted 0 from the host's events) |")
print(f"| first load of A | {t['first_load_ms']:.2f} | {ls_cold_load:.2f} (to /health {ls_cold_health:.1f}) | "
      f"troupe: {cache_note(sys.argv[3])}; llama-server: {cache_note(sys.argv[4])} |")
print(f"| reload of A evicted a moment ago (page cache warm) | {reload:.2f} ± {t['reload_ms']['stddev']:.2f} "
      f"(wall {t['reload_wall_ms']['avg']:.2f}) | {ls_warm_load:.2f} (to /health {ls_warm_health:.1f}) | "
      f"llama-server: a new process, --no-warmup, log 'loading model' → 'model loaded' |")
print(f"| evicting a model | {t['evict_ms']['avg']:.2f} | — | |")
print()
first = t["first_load_ms"]
if first:
    print(f"- troupe reload / troupe first load: {reload / first:.3f}")
if ls_warm_load == ls_warm_load and ls_warm_load:
    print(f"- troupe reload / llama-server load (warm): {reload / ls_warm_load:.3f}")
if ls_cold_load == ls_cold_load and ls_cold_load:
    print(f"- troupe first load / llama-server cold load: {first / ls_cold_load:.3f}")
EOF
cat "$swap_md"

# ---- 2. batched ---------------------------------------------------------------
say "batched: troupe bench batched vs llama-batched-bench"
TROUPE=$troupe THREADS=$threads REPS=$reps BENCH_OUT=$out_dir \
  LLAMA_BATCHED_BENCH=$peer_dir/bin/llama-batched-bench \
  "$root/benches/batched-vs-batched-bench.sh" "$model_a" >/dev/null

# ---- 3. HTTP ------------------------------------------------------------------
say "serve: troupe serve vs llama-server"
TROUPE=$troupe THREADS=$threads ROUNDS=$reps BENCH_OUT=$out_dir LLAMA_SERVER=$llama_server \
  "$root/benches/serve-vs-llama-server.sh" "$model_a" >/dev/null

report=$out_dir/issue3-comparison.md
{
  echo "# Model host: switching, batching, HTTP"
  echo
  echo '```'
  cat "$out_dir/issue3-environment.txt"
  echo '```'
  echo
  echo "## Switching models (troupe bench swap; llama-server's own load)"
  echo
  cat "$swap_md"
  echo
  echo "## 4 concurrent sequences (troupe bench batched vs llama-batched-bench)"
  echo
  cat "$out_dir/batched/batched-comparison.md"
  echo
  echo "## HTTP (troupe serve vs llama-server, benches/http_load.py)"
  echo
  cat "$out_dir/serve/serve-comparison.md"
} >"$report"
say "wrote $report"
cat "$report"
