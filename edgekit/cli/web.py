"""``edgekit serve-web``: serve the web demo over a local HTTP server.

Standard library only at import time; the server module is imported by the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgekit.core.errors import InputError, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve-web`` subcommand."""
    p = subparsers.add_parser(
        "serve-web", help="serve the web demo (TF.js models in the browser) on 127.0.0.1",
        description="Serve the web demo: pick an example, run its TF.js model in the browser, "
                    "compare with Keras. TF.js comes from `edgekit setup-js`'s cache; nothing is fetched "
                    "from the internet. Stop with Ctrl-C.")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="directory holding <example>/ dirs (default: artifacts)")
    p.add_argument("--port", type=int, default=8000, help="TCP port, 0 for any free one (default: 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.set_defaults(func=serve_web)


def serve_web(args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C; return 0."""
    if not 0 <= args.port <= 65535:
        raise UsageError("--port out of range", got=args.port, expected="0..65535")
    if not args.artifacts.is_dir():
        raise InputError("artifacts directory not found", got=str(args.artifacts),
                         expected="a directory written by edgekit train (--artifacts DIR)")
    from edgekit.runtime.jsdeps import INSTALL_HINT, modules_root
    from edgekit.web.server import VENDOR, make_server

    root = modules_root()
    missing = [str(root / d) for d in VENDOR.values() if not (root / d).is_dir()]
    if missing:
        raise InputError("TF.js is not installed for the page", got=", ".join(missing), expected=INSTALL_HINT)
    try:
        server = make_server(args.artifacts, host=args.host, port=args.port, verbose=args.verbose)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}", got=exc.strerror,
                         expected="a free port (--port N, or 0 for any)") from exc
    host, port = server.server_address[:2]
    names = server.site.examples()
    print(f"edgekit serve-web: http://{host}:{port}/  ({len(names)} examples from {server.site.artifacts};"
          f" Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("edgekit serve-web: stopped", file=sys.stderr, flush=True)
    finally:
        server.server_close()
    return 0
