#!/usr/bin/env bash
# Builds the book in docs/ into target/book, after checking that its
# configuration chapter matches config/src. mdBook is installed from
# crates.io into target/tools once (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/config-reference.py --check
mdbook=target/tools/bin/mdbook
if ! "$mdbook" --version >/dev/null 2>&1; then
  echo "build-docs: installing mdBook into target/tools" >&2
  cargo install mdbook --version 0.5.4 --locked --no-default-features --features search \
    --root target/tools --quiet
fi
"$mdbook" build docs
