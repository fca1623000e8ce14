#!/usr/bin/env bash
# Creates everything the loopback example needs, as a real consortium would:
# the coordinator's CA, each institution's own key and CSR, the signed
# certificates, and each institution's data (a Dirichlet split of digits).
# Usage: bash network-configs/loopback/make-certs.sh [path/to/flpeer]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
flpeer="${1:-}"
if [ -n "$flpeer" ]; then
  flpeer="$(cd "$(dirname "$flpeer")" && pwd)/$(basename "$flpeer")"
else
  swift build --package-path "$root" -c release --product flpeer >&2
  flpeer="$root/.build/release/flpeer"
fi
cd "$here"
rm -rf pki state data
"$flpeer" ca init --consortium loopback-demo --out pki/ca            # coordinator, once
for id in alice bob carol; do
  "$flpeer" keygen --institution "$id" --out "pki/$id"                 # at each institution
  "$flpeer" ca sign --ca pki/ca --csr "pki/$id/$id.csr.pem" --days 365 --out "pki/$id/$id.pem"   # coordinator
done
"$flpeer" data split --data "${FLPEER_DATA:-$root/data/digits.csv}" --parts 3 --alpha 0.5 --seed 1 --out data
for id in alice bob carol; do "$flpeer" config check --config "$id.yaml"; done
