"""A bounded load test of ``edgekit serve``: N concurrent clients for M seconds per protocol.

Starts ``edgekit serve DIR`` on free 127.0.0.1 ports (its own process, stopped at the end),
then for each protocol runs N client *processes* (not threads: the clients' own Python must
not share one GIL) for M seconds, each sending one request after the other on its own
connection and checking every answer against the runtime adapter's own prediction for the
rows it sent (a wrong or missing answer counts as failed). Protocols:

* ``v2-binary``: tritonclient HTTP, binary tensors (its default);
* ``v2-json``:   tritonclient HTTP, JSON tensors;
* ``grpc``:      tritonclient gRPC;
* ``tfs-rest``:  TF Serving REST ``:predict`` (``instances``), the standard library's http.client.

Reported per protocol: requests sent, answered, failed, lost (sent - answered), throughput
(each client's answered requests per second of its own run, summed), p50/p99/max latency, and
the server's RSS (its process tree, sampled every 0.25 s): before the run, peak, after.
Everything goes to stdout as one table and to ``--json``. Loopback only; each client stops
after M seconds or ``--max-requests``.

Usage::

    .venv/bin/python benchmarks/bench_serve.py DIR [--model moons_h3] [--clients 8] [--seconds 10]
        [--rows 1] [--protocols v2-binary,v2-json,grpc,tfs-rest] [--format tflite] [--json out.json]
        [-- extra edgekit serve options, e.g. --workers 1 --batch-time-ms 0]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

PROTOCOLS = ("v2-binary", "v2-json", "grpc", "tfs-rest")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(protocol: str, port: int, grpc_port: int, model: str, x: np.ndarray, want: np.ndarray, rows: int,
            seconds: float, max_requests: int, seed: int, out: mp.Queue) -> None:
    """One client process: requests back to back; (sent, answered, failed, latencies, first error) to ``out``."""
    rng = np.random.default_rng(seed)
    sent = answered = failed = 0
    lat: list[float] = []
    first_error = ""
    if protocol in ("v2-binary", "v2-json"):
        import tritonclient.http as tc
        client = tc.InferenceServerClient(f"127.0.0.1:{port}", connection_timeout=30, network_timeout=30)
    elif protocol == "grpc":
        import tritonclient.grpc as tc
        client = tc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    else:
        tc = None
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    binary = protocol == "v2-binary"
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline and sent < max_requests:
        idx = rng.integers(0, len(x), rows)
        batch = x[idx]
        sent += 1
        t0 = time.perf_counter()
        try:
            if protocol == "tfs-rest":
                client.request("POST", f"/v1/models/{model}:predict", json.dumps({"instances": batch.tolist()}),
                               {"Content-Type": "application/json"})
                resp = client.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
                got = np.asarray(json.loads(body)["predictions"], np.float32)
            else:
                inp = tc.InferInput("features", list(batch.shape), "FP32")
                if protocol == "grpc":
                    inp.set_data_from_numpy(batch)
                    got = client.infer(model, [inp]).as_numpy("output_0")
                else:
                    inp.set_data_from_numpy(batch, binary_data=binary)
                    req_out = tc.InferRequestedOutput("output_0", binary_data=binary)
                    got = client.infer(model, [inp], outputs=[req_out]).as_numpy("output_0")
            dt = time.perf_counter() - t0
            answered += 1
            if got is None or got.shape != want[idx].shape or not np.array_equal(got, want[idx]):
                failed += 1
                first_error = first_error or "answer differs from the runtime's own prediction"
            else:
                lat.append(dt)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, the first one reported
            failed += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
            if protocol == "tfs-rest":
                client.close()
                client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out.put((sent, answered, failed, lat, first_error, time.monotonic() - start))


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"edgekit serve exited {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit("edgekit serve did not become ready")


def run(args: argparse.Namespace, serve_extra: list[str]) -> dict:
    from edgekit.core.table import render
    from edgekit.runtime import manifest as mf
    from edgekit.runtime.registry import open_model

    example = Path(args.dir) / args.model
    man = mf.load(example / "exports")
    art = next(a for a in man.artifacts if a.format == args.format and a.precision == "fp32")
    with np.load(example / "reference.npz", allow_pickle=False) as z:
        x = z["features"].astype(np.float32)
    with open_model(art.verify(man.root), art.format) as runner:  # the answers every request is checked with
        want = np.concatenate([runner.predict(x[i:i + 1])["output_0"] for i in range(len(x))])
    port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "edgekit", "serve", str(example), "--format", args.format, "--port", str(port),
           "--grpc-port", str(grpc_port), *serve_extra]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = []
    try:
        _wait_ready(f"http://127.0.0.1:{port}", server)
        ctx = mp.get_context("spawn")
        for protocol in args.protocols.split(","):
            rss_samples: list[int] = []
            stop = threading.Event()

            def sample(samples=rss_samples, done=stop):
                while not done.is_set():
                    samples.append(_tree_rss(server.pid))
                    done.wait(0.25)

            before = _tree_rss(server.pid)
            sampler = threading.Thread(target=sample, daemon=True)
            queue: mp.Queue = ctx.Queue()
            clients = [ctx.Process(target=_client, args=(protocol, port, grpc_port, args.model, x, want, args.rows,
                                                         args.seconds, args.max_requests, seed, queue))
                       for seed in range(args.clients)]
            t0 = time.perf_counter()
            sampler.start()
            for c in clients:
                c.start()
            parts = [queue.get(timeout=args.seconds + 120) for _ in clients]
            wall = time.perf_counter() - t0
            for c in clients:
                c.join(timeout=30)
            stop.set()
            sampler.join()
            after = _tree_rss(server.pid)
            lat = np.asarray([v for p in parts for v in p[3]]) * 1000
            sent, answered, failed = (sum(p[i] for p in parts) for i in range(3))
            errors = [p[4] for p in parts if p[4]]
            results.append({
                "protocol": protocol, "clients": args.clients, "seconds": args.seconds, "rows": args.rows,
                "sent": sent, "answered": answered, "failed": failed, "lost": sent - answered,
                # each client's answered requests over its own run, summed (process start-up not counted)
                "throughput_rps": round(sum(p[1] / p[5] for p in parts if p[5] > 0), 1), "wall_s": round(wall, 1),
                "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
                "max_ms": round(float(lat.max()), 3) if lat.size else None,
                "rss_before_mb": round(before / 2**20, 1), "rss_peak_mb": round(max(rss_samples + [after]) / 2**20, 1),
                "rss_after_mb": round(after / 2**20, 1), "first_error": errors[0] if errors else ""})
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
    header = ["protocol", "sent", "answered", "failed", "lost", "req/s", "p50 ms", "p99 ms", "max ms",
              "server RSS before/peak/after MB"]
    rows = [(r["protocol"], r["sent"], r["answered"], r["failed"], r["lost"], r["throughput_rps"], r["p50_ms"],
             r["p99_ms"], r["max_ms"], f"{r['rss_before_mb']} / {r['rss_peak_mb']} / {r['rss_after_mb']}")
            for r in results]
    print(f"edgekit serve {args.model} ({args.format} fp32), {args.clients} client processes x {args.seconds} s "
          f"per protocol, {args.rows} row(s) per request, serve options: {' '.join(serve_extra) or 'defaults'}")
    print(render(header, rows, right=range(1, 9)))
    for r in results:
        if r["first_error"]:
            print(f"{r['protocol']}: first error: {r['first_error']}")
    doc = {"model": args.model, "format": args.format, "serve_options": serve_extra, "cpus": os.cpu_count(),
           "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return doc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="artifacts dir holding <model>/exports")
    p.add_argument("--model", default="moons_h3", help="example to load-test (default: moons_h3)")
    p.add_argument("--format", default="tflite", choices=("tflite", "onnx"), help="default: tflite")
    p.add_argument("--clients", type=int, default=8, help="concurrent client processes (default: 8)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per protocol (default: 10)")
    p.add_argument("--rows", type=int, default=1, help="rows per request (default: 1)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="per client and protocol (default: 1e6)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help=f"comma list (default: {','.join(PROTOCOLS)})")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    bad = [x for x in args.protocols.split(",") if x not in PROTOCOLS]
    if bad or not 1 <= args.clients <= 64 or not 0 < args.seconds <= 600:
        p.error(f"bad --protocols {bad}, --clients (1..64) or --seconds (0..600]")
    doc = run(args, extra)
    return 0 if all(r["failed"] == 0 and r["lost"] == 0 for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
