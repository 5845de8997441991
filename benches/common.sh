# Helpers shared by the bench scripts; source it after setting `script` to the
# script's name (used as the prefix of every message).

die() {
  printf '%s: error: %s\n' "$script" "$*" >&2
  exit 1
}
say() { printf '%s: %s\n' "$script" "$*" >&2; }

# llama.cpp's tools default to one thread per physical core; both sides of a
# comparison get the same explicit count so that neither picks its own.
physical_cores() {
  local n
  n=$(lscpu -p=Core,Socket 2>/dev/null | grep -v '^#' | sort -u | wc -l) || n=0
  [ "$n" -gt 0 ] 2>/dev/null || n=$(nproc)
  echo "$n"
}

# Sets `troupe` to the binary to measure: $TROUPE when given (e.g. the
# portable build of scripts/build-portable.sh), else a release build made
# here. Uses `root` and `out_dir` (the build log goes there).
release_troupe() {
  if [ -n "${TROUPE:-}" ]; then
    troupe=$TROUPE
  else
    say "building troupe (release; log: $out_dir/cargo-build.log)"
    cargo build --release --bin troupe --manifest-path "$root/Cargo.toml" \
      >"$out_dir/cargo-build.log" 2>&1 ||
      { tail -30 "$out_dir/cargo-build.log" >&2; die "cargo build --release --bin troupe failed"; }
    troupe=$root/target/release/troupe
  fi
  [ -x "$troupe" ] || die "$troupe is missing"
}

# Stops the server whose pid is in `server_pid` (started by this shell or by
# http_load.py): SIGTERM, up to 10 s to exit, then SIGKILL.
server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
