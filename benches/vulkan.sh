#!/usr/bin/env bash
# troupe's `vulkan` feature on Mesa's lavapipe (a Vulkan device that runs on
# the CPU), so that the GPU code path is built and tested on a machine with no
# GPU: builds troupe-inference with `--features vulkan`, runs its llama.cpp
# tests (inference/tests/it/gpu_vulkan.rs with every layer offloaded, plus
# engine_llama and engine_embed on the same build), then measures prompt and
# generation speed with and without offload on the "small" synthetic model.
#
# Debian bookworm's Vulkan headers (1.3.239) are too old for the vendored
# ggml-vulkan (it uses VK_EXT_layer_settings: Vulkan-Headers >= 1.3.261). The
# newer ones are taken from Debian trixie's libvulkan-dev and spirv-headers
# .debs, unpacked with `dpkg -x` under the build dir and handed to CMake's
# FindVulkan as VULKAN_SDK; no system package is replaced. bookworm's glslc
# (shaderc 2023.2) compiles the shaders; the loader is bookworm's libvulkan1.
#
# Usage: benches/vulkan.sh
# Environment:
#   VULKAN_TARGET_DIR        cargo target dir   (default target/vulkan)
#   GGML_VK_VISIBLE_DEVICES  Vulkan devices llama.cpp may use (default 0:
#                            ggml-vulkan ignores CPU devices unless named)
#   SKIP_BENCH=1             tests only, no speed table
#   RESULT                   speed table (default
#                            benches/results/vulkan-lavapipe-<date>.md)
set -euo pipefail
script=vulkan
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
target=${VULKAN_TARGET_DIR:-$root/target/vulkan}
sdk=$target/sdk/root/usr
result=${RESULT:-$root/benches/results/vulkan-lavapipe-$(date +%F).md}
min_header=261

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# --- system packages --------------------------------------------------------
bash "$root/scripts/install-deps.sh"
missing=()
for pkg in libvulkan-dev glslc spirv-headers mesa-vulkan-drivers; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# --- Vulkan headers new enough for ggml-vulkan -------------------------------
header_version() {
  sed -n 's/^#define VK_HEADER_VERSION \([0-9]*\)$/\1/p' "$1/include/vulkan/vulkan_core.h" 2>/dev/null
}
if [ "$(header_version "$sdk" || true)" -ge "$min_header" ] 2>/dev/null; then
  say "Vulkan headers 1.x.$(header_version "$sdk") in $sdk"
else
  say "fetching Vulkan headers from Debian trixie into $target/sdk"
  # A private apt state: the system's sources and package lists stay as they are.
  apt_dir=$target/sdk/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Sandbox::User=root")
  $sudo apt-get "${apt_opts[@]}" update -qq
  (cd "$apt_dir/debs" && $sudo apt-get "${apt_opts[@]}" download libvulkan-dev spirv-headers)
  rm -rf "$target/sdk/root"
  for deb in "$apt_dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$target/sdk/root"
  done
  version=$(header_version "$sdk" || true)
  [ "${version:-0}" -ge "$min_header" ] ||
    die "trixie's headers are 1.x.${version:-?}; ggml-vulkan needs 1.3.$min_header or newer"
  say "Vulkan headers 1.x.$version from $(cd "$apt_dir/debs" && echo *.deb)"
fi
# FindVulkan and llama-cpp-sys-2 look for the loader in $VULKAN_SDK/lib: the
# system's (bookworm) loader works with the newer headers.
mkdir -p "$sdk/lib"
ln -sf /usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$sdk/lib/libvulkan.so"

export VULKAN_SDK=$sdk
export CARGO_TARGET_DIR=$target
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES-0}

# --- build and test ---------------------------------------------------------
# The crate's integration tests are one binary (tests/it); these modules of it.
modules=(gpu_vulkan:: engine_llama:: engine_embed::)
say "building troupe-inference --features vulkan into $target (llama.cpp + shaders: slow)"
cargo test -p troupe-inference --features vulkan --locked --no-run --lib --test it \
  --manifest-path "$root/Cargo.toml"
# With the device visible llama.cpp also sends batches of 32 tokens or more
# to it when gpu_layers is 0 (op offload), so every test runs on lavapipe's
# kernels at least in part. One test is left out there: it expects batched
# rows to give the lone row's text bit for bit, which holds for the CPU's
# kernels, not for Vulkan's (other kernels for other batch sizes flip the
# synthetic model's near-tied logits); it runs in the CPU-only pass below.
say "tests on lavapipe (GGML_VK_VISIBLE_DEVICES=$GGML_VK_VISIBLE_DEVICES)"
cargo test -p troupe-inference --features vulkan --locked --lib \
  --manifest-path "$root/Cargo.toml" -- --skip concurrent_streams_equal_their_lone_runs
cargo test -p troupe-inference --features vulkan --locked --test it \
  --manifest-path "$root/Cargo.toml" -- "${modules[@]}" --skip concurrent_streams_equal_their_lone_runs
say "the same build with no Vulkan device visible: the CPU path is unchanged"
env -u GGML_VK_VISIBLE_DEVICES cargo test -p troupe-inference --features vulkan --locked \
  --lib --manifest-path "$root/Cargo.toml"
env -u GGML_VK_VISIBLE_DEVICES cargo test -p troupe-inference --features vulkan --locked \
  --test it --manifest-path "$root/Cargo.toml" -- engine_llama:: engine_embed::

[ "${SKIP_BENCH:-0}" = 1 ] && exit 0

# --- speed: the same binary with and without a Vulkan device ------------------
bench_row() { # label gpu_layers visible-devices
  local label=$1 layers=$2 visible=$3
  say "speed: $label"
  local devices=(-u GGML_VK_VISIBLE_DEVICES)
  [ -z "$visible" ] || devices=("GGML_VK_VISIBLE_DEVICES=$visible")
  env "${devices[@]}" TROUPE_BENCH_LABEL="$label" TROUPE_BENCH_GPU_LAYERS="$layers" \
    cargo test -q -p troupe-inference --features vulkan --locked --test it \
    --manifest-path "$root/Cargo.toml" -- --ignored --exact gpu_vulkan::speed_on_small_q8_0 --nocapture |
    grep '^| '
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
device=$(vulkaninfo --summary 2>/dev/null | sed -n 's/^[[:space:]]*deviceName[[:space:]]*= //p' | head -1 || true)
rows=$(
  bench_row "CPU only (no Vulkan device visible)" 0 ""
  bench_row "lavapipe visible, gpu_layers 0" 0 "$GGML_VK_VISIBLE_DEVICES"
  bench_row "lavapipe, every layer offloaded" 999 "$GGML_VK_VISIBLE_DEVICES"
)
mkdir -p "$(dirname "$result")"
{
  echo "# Vulkan (lavapipe) vs CPU, $(date +%F)"
  echo
  echo "\`bash benches/vulkan.sh\`: troupe-inference built with \`--features vulkan\`"
  echo "(dev profile; llama.cpp itself is built Release), the \"small\" synthetic"
  echo "model (36M parameters, Q8_0), 512 prompt tokens in one batch (pp512) and 128"
  echo "greedy tokens (tg128), 2 CPU threads, one warm-up then 3 runs, mean ± sd."
  echo "Vulkan device: ${device:-unknown} (Mesa lavapipe, which runs on the CPU: these"
  echo "figures test the code path, they say nothing about a real GPU)."
  echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1);"
  echo "load average before / after the runs: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "(anything above the core count means other work shared the CPU: figures are noisy)."
  echo
  echo "| run | layers offloaded | pp512 t/s | tg128 t/s |"
  echo "|---|---:|---:|---:|"
  echo "$rows"
} >"$result"
cat "$result"
say "wrote $result"
