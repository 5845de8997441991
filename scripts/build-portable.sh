#!/usr/bin/env bash
# A troupe that runs on any x86-64 CPU from SSE4.2 up: ggml's CPU backend is
# built in every variant (sse42, haswell, skylakex, icelake, sapphirerapids,
# zen4, …) and ggml picks the best one the CPU can run at start-up, as
# llama.cpp's and Ollama's release builds do (the `portable` feature:
# llama-cpp-2's dynamic-backends). troupe's own Rust code is built for
# baseline x86-64 (no target-cpu=native).
#
# Usage: scripts/build-portable.sh [DIST_DIR]   (default target/portable/dist)
# DIST_DIR then holds troupe, libllama/libggml*.so and libggml-cpu-*.so;
# copy the directory as a whole (troupe finds the libraries beside itself).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dist=${1:-$root/target/portable/dist}
target_dir=$root/target/portable

# RUSTFLAGS replaces .cargo/config.toml's target-cpu=native; the ggml fixes
# there ([env]) still apply.
RUSTFLAGS='-C link-arg=-Wl,-rpath,$ORIGIN' \
  cargo build --release --bin troupe --features portable \
  --manifest-path "$root/Cargo.toml" --target-dir "$target_dir"

out=$(ls -dt "$target_dir"/release/build/llama-cpp-sys-2-*/out | head -1)
[ -d "$out/backends" ] || { echo "build-portable: no backends in $out" >&2; exit 1; }
rm -rf "$dist"
mkdir -p "$dist"
cp "$target_dir/release/troupe" "$dist/"
cp -P "$out"/lib/*.so* "$dist/"
cp "$out"/backends/libggml-*.so "$dist/"
echo "portable troupe in $dist ($(ls "$dist" | grep -c 'libggml-cpu-') CPU variants)"
