# Shared set-up of the benchmark scripts (source it, then call bench_setup):
# run from the repository root, build the named release products, and make a
# scratch folder, $out, removed on exit.
bench_setup() {  # PRODUCT…
  root="$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)"
  cd "$root"
  local product
  for product in "$@"; do
    echo "building $product (release)…" >&2
    swift build -c release --product "$product" >&2
  done
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
}
