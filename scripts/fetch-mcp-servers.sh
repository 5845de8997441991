#!/usr/bin/env bash
# Installs the third-party MCP programs the MCP tests talk to, from the npm
# registry, into target/mcp-servers (project-local, ignored by git):
# - @modelcontextprotocol/server-everything and server-filesystem: real MCP
#   servers troupe did not write, for troupe-mcp's client tests;
# - @modelcontextprotocol/sdk: the official TypeScript SDK, whose client
#   drives `troupe mcp serve` in tests/it/mcp_server.rs.
# Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/mcp-servers
packages=(
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/server-filesystem@2026.8.31"
  "@modelcontextprotocol/sdk@1.32.2"
)
stamp="$dir/.installed"
want="${packages[*]}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-mcp-servers: npm is needed (node >= 18)" >&2; exit 1; }
mkdir -p "$dir"
[[ -f "$dir/package.json" ]] || echo '{"name":"troupe-mcp-test-servers","private":true}' >"$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "${packages[@]}"
echo "$want" >"$stamp"
