"""``edgekit serve``: exported models on MLServer (Open Inference Protocol v2, REST and gRPC) and TF Serving REST.

Standard library only at import time; MLServer and the runtimes are imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgekit.core.errors import DependencyError, EdgekitError, UsageError

SERVE_FORMATS = ("tflite", "onnx")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve", help="serve exported models over the v2 inference protocol (REST, gRPC) and TF Serving REST",
        description="Serve every example's exported file on MLServer: Open Inference Protocol v2 over REST "
                    "(/v2/models/NAME/infer) and gRPC, TensorFlow Serving's REST API (/v1/models/NAME:predict), "
                    "health at /v2/health/live and /v2/health/ready. Every file's sha256 is checked against its "
                    "manifest before anything listens. Stop with Ctrl-C.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="artifacts dir, example dir or exports dir (as for edgekit verify)")
    p.add_argument("--format", default="tflite", choices=SERVE_FORMATS, help="which export to serve (default: tflite)")
    p.add_argument("--precisions", default="fp32",
                   help="comma list; the first is served as NAME, each further one as NAME-PRECISION "
                        "(default: fp32)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8080, help="REST port: v2 and TF Serving routes (default: 8080)")
    p.add_argument("--grpc-port", type=int, default=8081, help="gRPC port (default: 8081)")
    p.add_argument("--workers", type=int, default=0,
                   help="MLServer inference worker processes (default: 0 = in the server process)")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads per model (default: the runtime's default)")
    p.add_argument("--batch-requests", type=int, default=32,
                   help="adaptive batching: most requests merged into one call (default: 32; 1 = off)")
    p.add_argument("--batch-time-ms", type=float, default=1.0,
                   help="adaptive batching: longest wait for requests to merge with (default: 1.0 ms; 0 = off)")
    p.add_argument("--max-batch-rows", type=int, default=4096,
                   help="largest batch one request may carry; more is refused with 413 (default: 4096)")
    p.add_argument("--max-body-mb", type=int, default=256,
                   help="largest binary-extension request body in MiB (default: 256)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this port (default: none)")
    p.add_argument("--verbose", action="store_true", help="MLServer's INFO logs and access logs")
    p.set_defaults(func=serve)


def _check(args: argparse.Namespace) -> list[str]:
    ports = [("--port", args.port), ("--grpc-port", args.grpc_port)]
    if args.metrics_port is not None:
        ports.append(("--metrics-port", args.metrics_port))
    for flag, port in ports:
        if not 1 <= port <= 65535:
            raise UsageError(f"{flag} out of range", got=port, expected="1..65535")
    if len({p for _, p in ports}) != len(ports):
        raise UsageError("ports must differ", got=", ".join(f"{f} {p}" for f, p in ports), expected="distinct ports")
    for flag, value, low in (("--workers", args.workers, 0), ("--batch-requests", args.batch_requests, 1),
                             ("--max-batch-rows", args.max_batch_rows, 1), ("--max-body-mb", args.max_body_mb, 1)):
        if value < low:
            raise UsageError(f"{flag} too small", got=value, expected=f">= {low}")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads too small", got=args.threads, expected=">= 1")
    if not 0 <= args.batch_time_ms <= 1000:
        raise UsageError("--batch-time-ms out of range", got=args.batch_time_ms, expected="0..1000")
    from edgekit.core.formats import SPECS

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    valid = [str(p) for p in SPECS[args.format].precisions]
    if not precisions or any(p not in valid for p in precisions) or len(set(precisions)) != len(precisions):
        raise UsageError(f"invalid --precisions for {args.format}", got=args.precisions,
                         expected=f"distinct names from {','.join(valid)}")
    return precisions


def serve(args: argparse.Namespace) -> int:
    """Check everything, print the served models, run until Ctrl-C/SIGTERM; return 0."""
    precisions = _check(args)
    import asyncio
    import importlib.util
    import socket

    if importlib.util.find_spec("mlserver") is None:
        raise DependencyError("MLServer is not installed", expected="pip install 'edgekit[serve]'")

    from edgekit.core.table import render
    from edgekit.serve.plan import plan

    models = plan(args.dirs, args.format, precisions)  # sha256 of every file checked here
    for flag, port in (("--port", args.port), ("--grpc-port", args.grpc_port)):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and gRPC do
            try:
                s.bind((args.host, port))
            except OSError as exc:
                raise UsageError(f"cannot listen on {args.host}:{port} ({flag})", got=exc.strerror,
                                 expected="a free port") from exc
    rows = [(m.name, m.version, f"{m.format}/{m.precision}", ", ".join(t.describe() for t in m.inputs),
             ", ".join(t.describe() for t in m.outputs)) for m in models]
    print(render(["model", "version", "file", "inputs", "outputs"], rows), flush=True)
    print(f"edgekit serve: {len(models)} models; v2 REST http://{args.host}:{args.port}/v2/models/NAME/infer, "
          f"gRPC {args.host}:{args.grpc_port}, TF Serving REST http://{args.host}:{args.port}/v1/models/NAME:predict; "
          "Ctrl-C to stop", flush=True)
    try:
        asyncio.run(_run(args, models))
    except EdgekitError:
        raise
    except KeyboardInterrupt:
        pass
    print("edgekit serve: stopped", file=sys.stderr, flush=True)
    return 0


async def _run(args: argparse.Namespace, models) -> None:
    from edgekit.serve.server import EdgekitServer, model_settings, server_settings

    settings = server_settings(args.host, args.port, args.grpc_port, args.workers, args.metrics_port, args.verbose)
    server = EdgekitServer(settings, max_body=args.max_body_mb << 20)
    await server.run([model_settings(m, batch_requests=args.batch_requests, batch_time_ms=args.batch_time_ms,
                                     max_batch_rows=args.max_batch_rows, num_threads=args.threads) for m in models])
