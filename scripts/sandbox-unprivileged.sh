#!/usr/bin/env bash
# The sandbox's escape tests (sandbox/tests/it/escapes.rs) once more as an
# unprivileged user, as troupe usually runs: nobody (65534), no groups, no
# capabilities. Run by scripts/test.sh after the suite, when it runs as root
# (as a plain user the suite itself already was the unprivileged run).
# The test binary and the helper are copied where that user can read them,
# and the tests work in a directory it owns.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "sandbox-unprivileged: not root; the suite already ran the escape tests as $(id -un)"
  exit 0
fi
command -v setpriv >/dev/null || { echo "sandbox-unprivileged: setpriv (util-linux) is missing" >&2; exit 1; }
binary=$(cargo test -p troupe-sandbox --test it --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" and m.get("executable"):
        print(m["executable"])')
helper=$(dirname "$(dirname "$binary")")/troupe-sandbox
[ -x "$binary" ] && [ -x "$helper" ] || { echo "sandbox-unprivileged: test binary or helper missing" >&2; exit 1; }
# Not under /tmp: the sandbox gives the command a private /tmp unless a
# policy path lies there, and the tests check that /tmp is writable.
work=$(mktemp -d /var/tmp/troupe-sandbox-unpriv.XXXXXX)
trap 'rm -rf "$work"' EXIT
install -m 755 "$binary" "$work/escapes"
install -m 755 "$helper" "$work/troupe-sandbox"
mkdir -m 700 "$work/scratch"
chown 65534:65534 "$work/scratch"
chmod 755 "$work"
echo "sandbox-unprivileged: escapes as uid 65534"
cd "$work"
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
  env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work/scratch" \
  SANDBOX_TEST_DIR="$work/scratch" SANDBOX_TEST_HELPER="$work/troupe-sandbox" \
  "$work/escapes" --test-threads=2 escapes::
