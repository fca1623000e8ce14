# Shared by the benchmark scripts: build flbench in release mode with the
# same SIMD flags the main package uses for FLCore (SwiftPM drops a
# dependency's unsafe flags, so the benchmark package passes them itself).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
flags=()
if [ "$(uname -m)" = x86_64 ] && [ -z "${FLPEER_PORTABLE:-}" ]; then
  flags=(-Xswiftc -target-cpu -Xswiftc haswell)
fi
echo "building flbench (release)…" >&2
swift build --package-path Benchmarks -c release "${flags[@]}" >&2
flbench="$root/Benchmarks/.build/release/flbench"
