#!/usr/bin/env bash
# The test command: installs what the build needs, then runs every test of the
# workspace. Tests use the dev profile (llama.cpp itself is still compiled
# optimised; see Cargo.toml), the one profile CI builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --workspace --locked "$@"
