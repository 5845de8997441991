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
