#!/usr/bin/env bash
# One blob between two processes over loopback mutual TLS 1.3: flpeer
# (flbench transfer; the receiver hashes every byte and writes it to disk)
# beside a reference transfer of the same number of bytes through OpenSSL
# (benchmarks/tls_reference.py: Python's ssl module, Ed25519 mutual TLS 1.3,
# bytes discarded), in the same run. MB = 10^6 bytes. (openssl s_client
# exits at once when its stdin is not a terminal here, so it cannot be the
# reference.)
source "$(dirname "$0")/common.sh"
mb=${MB:-100}; runs=${RUNS:-3}
echo "flpeer …" >&2
swift_json=$("$flbench" transfer --mb "$mb" --runs "$runs")
echo "OpenSSL reference (Python ssl) …" >&2
ref_json=$(python3 benchmarks/tls_reference.py --mb "$mb" --runs "$runs")
python3 - "$swift_json" "$mb" "$ref_json" <<'PY'
import json, statistics, sys
s = json.loads(sys.argv[1]); mb = int(sys.argv[2]); ref = json.loads(sys.argv[3])["seconds"]
r = statistics.median(ref)
print(json.dumps({"flpeer": s, "openssl_seconds": ref}))
print(f"{mb} MB over loopback mutual TLS 1.3, medians of {len(ref)} runs")
print(f"  flpeer   {s['MBps']:7.0f} MB/s  ({s['median_s']:.3f} s; runs {', '.join(f'{x:.3f}' for x in s['seconds'])})")
print(f"  OpenSSL  {mb / r:7.0f} MB/s  ({r:.3f} s; runs {', '.join(f'{x:.3f}' for x in ref)})")
print(f"  ratio    {100 * (mb / s['median_s']) / (mb / r):.0f} % of the reference")
peaks = [p - b for p, b in zip(s['receiver_peak_rss_MB'], s['receiver_rss_before_MB'])]
print(f"  receiver peak RSS {', '.join(f'{p:.0f}' for p in s['receiver_peak_rss_MB'])} MB; above its idle size: {', '.join(f'{p:.1f}' for p in peaks)} MB")
PY
