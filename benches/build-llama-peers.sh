#!/usr/bin/env bash
# Builds llama.cpp's own tools — llama-bench, llama-batched-bench and
# llama-server — against the llama.cpp library sources that llama-cpp-sys-2
# vendors (ggml kernels, libllama, common), with the CPU flags troupe's build
# uses (GGML_NATIVE, OpenMP, static libraries), so that side-by-side figures
# compare the Rust layer and nothing else. (troupe's release build compiles
# llama.cpp as RelWithDebInfo, not Release: see benches/peers/README.md.)
#
# The crate ships the library sources but not the tools' own sources, so the
# tools come from the llama.cpp that the PyPI sdist of llama-cpp-python
# vendors (pinned below by version and hash), overlaid on a scratch copy of
# the crate's tree. Everything performance-relevant is compiled from the
# crate's copy; benches/peers/README.md records provenance and how close the
# two llama.cpp snapshots are.
#
# Usage: benches/build-llama-peers.sh [TARGET...]   (default: all three)
# Environment:
#   PEER_BUILD_DIR  CMake build dir        (default target/llama-peers)
#   PEER_SRC_DIR    download + tree cache  (default target/llama-peers-src)
#   PEER_BUILD_TYPE CMake build type       (default Release)
#   PEER_JOBS       parallel compile jobs  (default nproc)
#   GGML_*          forwarded to CMake, as llama-cpp-sys-2's build script does
# Output: the binaries' paths on stdout, one per line ($PEER_BUILD_DIR/bin/).
set -euo pipefail
script=build-llama-peers
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
peers=$root/benches/peers

# The overlay below was checked against this llama-cpp-sys-2 release.
expected_sys_version=0.1.161
# Source of the tools: llama-cpp-python's sdist, whose vendor/llama.cpp is
# ggml-org/llama.cpp at the commit below.
lcp_version=0.3.36
lcp_llama_commit=0c1e57098bba43ac29e6e3b677cdceebdd22334f
lcp_sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

src_cache=${PEER_SRC_DIR:-$root/target/llama-peers-src}
out=${PEER_BUILD_DIR:-$root/target/llama-peers}
build_type=${PEER_BUILD_TYPE:-Release}
jobs=${PEER_JOBS:-$(nproc)}


for tool in cargo cmake python3 tar patch; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH; it is needed to build the peers"
done

known_targets=(llama-bench llama-batched-bench llama-server)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${known_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${known_targets[*]} " == *" $t "* ]] ||
    die "unknown target '$t' (known: ${known_targets[*]})"
done

mkdir -p "$src_cache" "$out"

# 1. The llama.cpp tree llama-cpp-sys-2 vendors, as cargo resolved it.
meta_err=$src_cache/cargo-metadata.err
sys_line=$(cargo metadata --format-version 1 --manifest-path "$root/Cargo.toml" 2>"$meta_err" |
  python3 -c 'import json, sys
m = json.load(sys.stdin)
for p in m["packages"]:
    if p["name"] == "llama-cpp-sys-2":
        print(p["version"], p["manifest_path"])
        break') || { tail -20 "$meta_err" >&2; die "cargo metadata failed for $root/Cargo.toml"; }
[ -n "$sys_line" ] || die "llama-cpp-sys-2 is not in the dependency graph of $root/Cargo.toml"
sys_version=${sys_line%% *}
vendored=$(dirname "${sys_line#* }")/llama.cpp
[ -f "$vendored/CMakeLists.txt" ] || die "no llama.cpp tree at $vendored"
if [ "$sys_version" != "$expected_sys_version" ]; then
  say "warning: llama-cpp-sys-2 is $sys_version, the overlay was checked against" \
    "$expected_sys_version; if the build fails, pick a llama-cpp-python sdist whose" \
    "llama.cpp matches (see benches/peers/README.md)"
fi
say "library sources: $vendored (llama-cpp-sys-2 $sys_version)"

# 2. The tools' sources: llama-cpp-python's sdist from PyPI, hash-pinned.
sdist=$src_cache/llama_cpp_python-$lcp_version.tar.gz
sha256_of() { python3 -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())' "$1"; }
if [ ! -f "$sdist" ] || [ "$(sha256_of "$sdist")" != "$lcp_sha256" ]; then
  say "downloading llama-cpp-python $lcp_version sdist from PyPI"
  # Straight from the index: `pip download` of an sdist prepares its
  # metadata, which builds cmake and ninja from source (many minutes).
  rm -rf "$src_cache/download"
  mkdir -p "$src_cache/download"
  python3 - "$lcp_version" "$lcp_sha256" "$src_cache/download" >"$src_cache/download.log" 2>&1 <<'PY' ||
import os, re, sys, urllib.request
version, sha, dest = sys.argv[1:4]
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
page = urllib.request.urlopen(f"{index}/llama-cpp-python/", timeout=60).read().decode()
name = f"llama_cpp_python-{version}.tar.gz"
links = [u for u in re.findall(r'href="([^"]+)"', page) if name in u and sha in u]
if not links:
    sys.exit(f"no {name} with sha256 {sha} on {index}")
url = urllib.parse.urljoin(f"{index}/llama-cpp-python/", links[0].split("#")[0])
urllib.request.urlretrieve(url, os.path.join(dest, name))
PY
    { tail -20 "$src_cache/download.log" >&2; die "could not download llama-cpp-python==$lcp_version"; }
  mv "$src_cache/download/llama_cpp_python-$lcp_version.tar.gz" "$sdist" ||
    die "the download did not leave llama_cpp_python-$lcp_version.tar.gz in $src_cache/download"
  [ "$(sha256_of "$sdist")" = "$lcp_sha256" ] || die "sha256 of $sdist is not $lcp_sha256"
fi

# 3. A scratch tree: the crate's llama.cpp plus the overlay. Only the tools'
# sources and the CMake glue they need leave the archive: everything the
# tools link (ggml, llama, common, mtmd, vendor/) stays the crate's own copy.
make_tree() {
  local lcp_llama=llama_cpp_python-$lcp_version/vendor/llama.cpp
  local extract=$src_cache/extract
  rm -rf "$extract" "$tree"
  mkdir -p "$extract"
  tar -xzf "$sdist" -C "$extract" \
    "$lcp_llama/tools/llama-bench" \
    "$lcp_llama/tools/batched-bench" \
    "$lcp_llama/tools/server" \
    "$lcp_llama/tools/ui/CMakeLists.txt" \
    "$lcp_llama/tools/ui/ui.h.in" \
    "$lcp_llama/tools/ui/ui.cpp.in" \
    "$lcp_llama/scripts/ui-assets.cmake" ||
    die "$sdist lacks the expected tool sources under $lcp_llama"
  local x=$extract/$lcp_llama

  cp -pR "$vendored" "$tree"
  chmod -R u+w "$tree"
  for d in llama-bench batched-bench server; do
    mkdir -p "$tree/tools/$d"
    cp -pR "$x/tools/$d/." "$tree/tools/$d/"
  done
  mkdir -p "$tree/tools/ui" "$tree/scripts"
  cp -p "$x/tools/ui/CMakeLists.txt" "$x/tools/ui/ui.h.in" "$x/tools/ui/ui.cpp.in" "$tree/tools/ui/"
  cp -p "$x/scripts/ui-assets.cmake" "$tree/scripts/"
  cp -p "$peers/tools-CMakeLists.txt" "$tree/tools/CMakeLists.txt"
  for p in "${patches[@]}"; do
    say "applying $(basename "$p")"
    patch -p1 -d "$tree" --forward --batch --quiet <"$p" || die "patch $p does not apply to $tree"
  done
  rm -rf "$extract"
}

# Remade only when an input changed, since a remade tree recompiles the
# patched files (cp -p keeps every other file's time).
tree=$src_cache/tree
shopt -s nullglob
patches=("$peers"/*.patch)
shopt -u nullglob
tree_key="$vendored $sys_version $lcp_sha256 $(cat "${BASH_SOURCE[0]}" "$peers/tools-CMakeLists.txt" "${patches[@]}" | cksum)"
if [ -f "$tree/.peer-tree-key" ] && [ "$(cat "$tree/.peer-tree-key")" = "$tree_key" ]; then
  say "scratch tree up to date: $tree"
else
  make_tree
  printf '%s\n' "$tree_key" >"$tree/.peer-tree-key"
fi

# 4. Configure and build. The Web UI is neither built (npm) nor downloaded
# (Hugging Face): llama-server is built with an empty asset table. The build
# commit is set, or llama.cpp's CMake would report the commit of the git
# repository the scratch tree happens to sit in (troupe's).
ggml_env=()
for key in $(compgen -e); do
  if [[ $key == GGML_* ]]; then ggml_env+=("-D$key=${!key}"); fi
done
# The same fixes troupe's build carries (.cargo/config.toml force-includes
# this header into llama-cpp-sys-2's C++): see the header.
fixes=$root/build-support/ggml/troupe-ggml-fixes.h
[ -f "$fixes" ] || die "missing $fixes"
say "configuring ($build_type) in $out"
cmake -S "$tree" -B "$out" \
  "${ggml_env[@]}" \
  -DCMAKE_CXX_FLAGS="${CXXFLAGS:-} -include $fixes" \
  -DCMAKE_BUILD_TYPE="$build_type" \
  -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DBUILD_SHARED_LIBS=OFF -DGGML_CCACHE=OFF \
  -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_TOOLS_INSTALL=OFF \
  -DLLAMA_BUILD_NUMBER=0 -DLLAMA_BUILD_COMMIT="sys2-$sys_version+tools-${lcp_llama_commit:0:9}" \
  >"$out/configure.log" 2>&1 ||
  { tail -30 "$out/configure.log" >&2; die "CMake configure failed (full log: $out/configure.log)"; }
say "building ${targets[*]} with $jobs jobs (log: $out/build.log)"
cmake --build "$out" -j "$jobs" --target "${targets[@]}" >"$out/build.log" 2>&1 ||
  { tail -40 "$out/build.log" >&2; die "build failed (full log: $out/build.log)"; }

for t in "${targets[@]}"; do
  [ -x "$out/bin/$t" ] || die "the build reported success but $out/bin/$t is missing"
  echo "$out/bin/$t"
done
say "tools from llama-cpp-python $lcp_version sdist, libraries from llama-cpp-sys-2 $sys_version"
