#!/usr/bin/env python3
"""Reference TLS 1.3 transfer for the transport benchmark.

Moves --mb megabytes (10^6 bytes) from a client process to a server process
over loopback with mutual TLS 1.3 and Ed25519 certificates, using Python's
ssl module (OpenSSL). The server reads into a reused 1 MiB buffer and
discards the bytes; the client sends 1 MiB slices of an in-memory buffer.
Prints one JSON object with each run's seconds (connect to last byte read).
"""
import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def make_certs(d):
    for name in ("s", "c"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", f"{d}/{name}.key",
                        "-out", f"{d}/{name}.pem", "-subj", f"/CN={name}", "-days", "2"],
                       check=True, capture_output=True)


def context(d, server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    me, peer = ("s", "c") if server else ("c", "s")
    ctx.load_cert_chain(f"{d}/{me}.pem", f"{d}/{me}.key")
    ctx.load_verify_locations(f"{d}/{peer}.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False
    return ctx


def serve(d, total):
    ctx = context(d, True)
    with socket.create_server(("127.0.0.1", 0)) as ls:
        print(ls.getsockname()[1], flush=True)
        conn, _ = ls.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            buf = bytearray(1 << 20)
            got = 0
            while got < total:
                n = tls.recv_into(buf)
                if n == 0:
                    break
                got += n
            print(json.dumps({"received": got, "at": time.time()}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--serve", default=None)
    a = p.parse_args()
    total = a.mb * 1_000_000
    if a.serve:
        serve(a.serve, total)
        return
    d = tempfile.mkdtemp()
    make_certs(d)
    payload = os.urandom(total)
    view = memoryview(payload)
    times = []
    for _ in range(a.runs):
        srv = subprocess.Popen([sys.executable, __file__, "--mb", str(a.mb), "--serve", d], stdout=subprocess.PIPE, text=True)
        port = int(srv.stdout.readline())
        ctx = context(d, False)
        start = time.time()
        with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as tls:
            for off in range(0, total, 1 << 20):
                tls.sendall(view[off:off + (1 << 20)])
            report = json.loads(srv.stdout.readline())
        srv.wait()
        assert report["received"] == total, report
        times.append(report["at"] - start)
    print(json.dumps({"benchmark": "tls_reference", "openssl": ssl.OPENSSL_VERSION, "mb": a.mb, "seconds": times}))


if __name__ == "__main__":
    main()
