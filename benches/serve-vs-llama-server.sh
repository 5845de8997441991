#!/usr/bin/env bash
# `troupe serve` next to llama-server (built from the same vendored llama.cpp)
# over HTTP: the same model, slots, threads and context per slot, measured by
# the same client (benches/http_load.py): K concurrent streaming
# /v1/completions requests of MAX_TOKENS tokens each (ignore_eos, greedy),
# ROUNDS rounds after a warm-up round, then the same with one stream.
# The servers run one after the other, never together.
#
# Usage: benches/serve-vs-llama-server.sh MODEL.gguf
# Environment:
#   THREADS      CPU threads for both servers (default: physical cores)
#   SLOTS        parallel slots of both, and the concurrent streams (default 4)
#   CTX          KV tokens per slot (default 512; llama-server gets -c SLOTS×CTX)
#   ROUNDS       measured rounds per case (default 3)
#   MAX_TOKENS   tokens per request (default 128)
#   BENCH_OUT    output directory (default target/bench-out)
#   TROUPE       troupe binary (default target/release/troupe; not built here)
#   LLAMA_SERVER llama-server binary (default target/llama-peers/bin/llama-server)
# Output: BENCH_OUT/serve/{troupe,llama-server}-k{SLOTS,1}.json, server logs,
#         serve-comparison.md (printed too).
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
rounds=${ROUNDS:-3}
max_tokens=${MAX_TOKENS:-128}
out_dir=${BENCH_OUT:-$root/target/bench-out}/serve
troupe=${TROUPE:-$root/target/release/troupe}
llama_server=${LLAMA_SERVER:-$root/target/llama-peers/bin/llama-server}
client=$root/benches/http_load.py
[ -x "$troupe" ] || die "$troupe is missing (cargo build --release --bin troupe)"
[ -x "$llama_server" ] || die "$llama_server is missing (benches/build-llama-peers.sh llama-server)"
[ "$max_tokens" -lt "$ctx" ] || die "MAX_TOKENS ($max_tokens) must leave room for the prompt in CTX ($ctx)"
mkdir -p "$out_dir"

# troupe serves the models of a directory by file stem: give it one that
# holds only this model.
models_dir=$out_dir/models
rm -rf "$models_dir"
mkdir -p "$models_dir"
name=$(basename "$model" .gguf)
ln -s "$model" "$models_dir/$name.gguf"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

trap stop_server EXIT
trap 'exit 130' INT TERM

# measure LABEL URL: both stream counts against the running server.
measure() {
  local label=$1 url=$2 k
  for k in "$slots" 1; do
    say "$label: $k concurrent stream(s), $rounds rounds of $max_tokens tokens"
    python3 "$client" run --url "$url" --model "$name" --label "$label" -k "$k" \
      -r "$rounds" --max-tokens "$max_tokens" --out "$out_dir/$label-k$k.json" \
      >/dev/null 2>"$out_dir/$label-k$k.err" ||
      { cat "$out_dir/$label-k$k.err" >&2; die "the client failed against $label"; }
  done
}

port=$(free_port)
say "troupe serve on 127.0.0.1:$port (--slots $slots -t $threads --ctx $ctx)"
# Batch 2048: llama-server's default -b (troupe's configured default is 512;
# it only matters for prompts longer than that).
TROUPE_INFERENCE__BATCH_SIZE=2048 "$troupe" serve --addr "127.0.0.1:$port" --models-dir "$models_dir" --slots "$slots" \
  -t "$threads" --ctx "$ctx" --log warn >"$out_dir/troupe-serve.log" 2>&1 &
server_pid=$!
python3 "$client" wait "http://127.0.0.1:$port" --timeout 60 >/dev/null ||
  { tail -20 "$out_dir/troupe-serve.log" >&2; die "troupe serve did not become healthy"; }
measure troupe "http://127.0.0.1:$port"
stop_server

port=$(free_port)
total_ctx=$((slots * ctx))
say "llama-server on 127.0.0.1:$port (-np $slots -t $threads -c $total_ctx)"
# -no-kvu: one KV stream per slot, as troupe allocates (its default with an
# explicit -np, said here so it cannot drift). --no-webui: API only.
"$llama_server" -m "$model" --host 127.0.0.1 --port "$port" -np "$slots" -t "$threads" \
  -c "$total_ctx" -no-kvu --no-webui >"$out_dir/llama-server.log" 2>&1 &
server_pid=$!
python3 "$client" wait "http://127.0.0.1:$port" --timeout 120 >/dev/null ||
  { tail -20 "$out_dir/llama-server.log" >&2; die "llama-server did not become healthy"; }
measure llama-server "http://127.0.0.1:$port"
stop_server

{
  echo "model: $name ($model); threads $threads, $slots slots × $ctx tokens, $max_tokens tokens per request, $rounds rounds"
  echo
  python3 "$client" compare "$out_dir"/troupe-k*.json "$out_dir"/llama-server-k*.json
} | tee "$out_dir/serve-comparison.md"
