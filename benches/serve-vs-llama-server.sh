#!/usr/bin/env bash
# `troupe serve` next to llama-server (built from the same vendored llama.cpp)
# over HTTP: the same model, slots, threads and context per slot, measured by
# the same client (benches/http_load.py): K concurrent streaming
# /v1/completions requests of MAX_TOKENS tokens each (ignore_eos, greedy),
# after a warm-up round, then the same with one stream.
# The servers run one after the other, never together, and take turns round
# by round: each round starts one server, measures, stops it, then does the
# same with the other; odd rounds start llama-server first, even rounds
# troupe. This machine's speed drifts by tens of percent within minutes, so
# a drift falls on both alike. The table has medians over rounds and the
# per-round ratios (http_load.py compare).
#
# Usage: benches/serve-vs-llama-server.sh MODEL.gguf
# Environment:
#   THREADS       CPU threads for both servers (default: physical cores)
#   SLOTS         parallel slots of both, and the concurrent streams (default 4)
#   CTX           KV tokens per slot (default 512; llama-server gets -c SLOTS×CTX)
#   ROUNDS        rounds; each starts both servers once (default 5)
#   CLIENT_ROUNDS measured client rounds per server start and stream count,
#                 averaged into the round's figure (default 1)
#   MAX_TOKENS    tokens per request (default 128)
#   APIS          troupe's routes measured, each against llama-server's
#                 counterpart, in every server start (default completions;
#                 also chat: /v1/chat/completions, ollama-chat: /api/chat,
#                 whose counterpart is llama-server's chat route)
#   BENCH_OUT     output directory (default target/bench-out)
#   TROUPE        troupe binary (default target/release/troupe; not built here)
#   LLAMA_SERVER  llama-server binary (default target/llama-peers/bin/llama-server)
# Output: BENCH_OUT/serve/{troupe,llama-server}-API-k{SLOTS,1}-rROUND.json,
#         server logs, serve-comparison-API.{md,json} (the tables are printed
#         too).
set -euo pipefail
script=serve-vs-llama-server
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)

[ $# -eq 1 ] || die "usage: $0 MODEL.gguf"
model=$(realpath "$1") || die "no model at $1"
[ -f "$model" ] || die "no model at $1"

threads=${THREADS:-$(physical_cores)}
slots=${SLOTS:-4}
ctx=${CTX:-512}
rounds=${ROUNDS:-5}
client_rounds=${CLIENT_ROUNDS:-1}
max_tokens=${MAX_TOKENS:-128}
read -r -a apis <<<"${APIS:-completions}"
for api in "${apis[@]}"; do
  case $api in completions | chat | ollama-chat) ;; *) die "APIS: unknown route '$api' (completions, chat, ollama-chat)" ;; esac
done
out_dir=${BENCH_OUT:-$root/target/bench-out}/serve
troupe=${TROUPE:-$root/target/release/troupe}
llama_server=${LLAMA_SERVER:-$root/target/llama-peers/bin/llama-server}
client=$root/benches/http_load.py
[ -x "$troupe" ] || die "$troupe is missing (cargo build --release --bin troupe)"
[ -x "$llama_server" ] || die "$llama_server is missing (benches/build-llama-peers.sh llama-server)"
[ "$rounds" -ge 1 ] 2>/dev/null || die "ROUNDS must be a whole number of at least 1, not '$rounds'"
[ "$client_rounds" -ge 1 ] 2>/dev/null || die "CLIENT_ROUNDS must be a whole number of at least 1, not '$client_rounds'"
[ "$max_tokens" -lt "$ctx" ] || die "MAX_TOKENS ($max_tokens) must leave room for the prompt in CTX ($ctx)"
mkdir -p "$out_dir"
# Reports of an earlier run with more rounds must not join this one's.
rm -f "$out_dir"/troupe-*.json "$out_dir"/llama-server-*.json "$out_dir"/*.err "$out_dir"/*.log \
  "$out_dir"/serve-comparison*

# troupe serves the models of a directory by file stem: give it one that
# holds only this model.
models_dir=$out_dir/models
rm -rf "$models_dir"
mkdir -p "$models_dir"
name=$(basename "$model" .gguf)
ln -s "$model" "$models_dir/$name.gguf"

# `troupe serve` runs the whole troupe, whose store (redb) takes a lock on
# its data dir: each start gets a fresh one, so no task or state of another
# round (or of the user's own troupe) is recovered or in the way. Binaries
# from before --data-dir read it from the environment instead.
data_root=$out_dir/data
rm -rf "$data_root"
data_flag=
if "$troupe" serve --help 2>/dev/null | grep -q -- '--data-dir'; then
  data_flag=1
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

trap stop_server EXIT
trap 'exit 130' INT TERM

# measure LABEL ROUND URL: both stream counts against the running server.
measure() {
  local label=$1 r=$2 url=$3 k report api route
  for api in "${apis[@]}"; do
    # llama-server's counterpart of Ollama's /api/chat is its chat route.
    route=$api
    [[ $label == llama-server && $api == ollama-chat ]] && route=chat
    for k in "$slots" 1; do
      report=$out_dir/$label-$api-k$k-r$r
      say "round $r, $label, $route: $k concurrent stream(s), $client_rounds client round(s) of $max_tokens tokens"
      python3 "$client" run --url "$url" --model "$name" --label "$label" -k "$k" --round "$r" \
        --api "$route" --salt "$api-k$k-" -r "$client_rounds" --max-tokens "$max_tokens" \
        --out "$report.json" \
        >/dev/null 2>"$report.err" ||
        { cat "$report.err" >&2; die "the client failed against $label (round $r, $route)"; }
    done
  done
}

# run_troupe ROUND: start troupe serve on a fresh data dir, measure, stop.
run_troupe() {
  local r=$1 port data log
  port=$(free_port)
  data=$data_root/troupe-$r
  log=$out_dir/troupe-serve-$r.log
  mkdir -p "$data"
  local args=(serve --addr "127.0.0.1:$port" --models-dir "$models_dir" --slots "$slots"
    -t "$threads" --ctx "$ctx" --log warn)
  [ -z "$data_flag" ] || args+=(--data-dir "$data")
  say "round $r: troupe serve on 127.0.0.1:$port (--slots $slots -t $threads --ctx $ctx, data in $data)"
  # Batch 2048: llama-server's default -b (troupe's configured default is
  # 512; it only matters for prompts longer than that).
  TROUPE_DATA_DIR=$data TROUPE_INFERENCE__BATCH_SIZE=2048 "$troupe" "${args[@]}" >"$log" 2>&1 &
  server_pid=$!
  python3 "$client" wait "http://127.0.0.1:$port" --timeout 60 >/dev/null ||
    { tail -20 "$log" >&2; die "troupe serve did not become healthy (round $r)"; }
  measure troupe "$r" "http://127.0.0.1:$port"
  stop_server
  rm -rf "$data"
}

# run_llama_server ROUND: start llama-server, measure, stop.
run_llama_server() {
  local r=$1 port log total_ctx=$((slots * ctx))
  port=$(free_port)
  log=$out_dir/llama-server-$r.log
  say "round $r: llama-server on 127.0.0.1:$port (-np $slots -t $threads -c $total_ctx)"
  # -no-kvu: one KV stream per slot, as troupe allocates (its default with
  # an explicit -np, said here so it cannot drift). --no-webui: API only.
  "$llama_server" -m "$model" --host 127.0.0.1 --port "$port" -np "$slots" -t "$threads" \
    -c "$total_ctx" -no-kvu --no-webui >"$log" 2>&1 &
  server_pid=$!
  python3 "$client" wait "http://127.0.0.1:$port" --timeout 120 >/dev/null ||
    { tail -20 "$log" >&2; die "llama-server did not become healthy (round $r)"; }
  measure llama-server "$r" "http://127.0.0.1:$port"
  stop_server
}

# Read the model once so that the first server started does not pay for
# the disk alone.
cat "$model" >/dev/null

for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    run_llama_server "$r"
    run_troupe "$r"
  else
    run_troupe "$r"
    run_llama_server "$r"
  fi
done
rmdir "$data_root" 2>/dev/null || true

for api in "${apis[@]}"; do
  {
    peer_route=$api
    [[ $api == ollama-chat ]] && peer_route=chat
    echo "troupe $api vs llama-server $peer_route. model: $name ($model); threads $threads, $slots slots × $ctx tokens," \
      "$max_tokens tokens per request; $rounds rounds taking turns, $client_rounds client round(s) per server start;" \
      "figures are medians over rounds"
    echo
    python3 "$client" compare --json "$out_dir/serve-comparison-$api.json" \
      "$out_dir"/troupe-"$api"-k*-r*.json "$out_dir"/llama-server-"$api"-k*-r*.json
    echo
  } | tee "$out_dir/serve-comparison-$api.md"
done
