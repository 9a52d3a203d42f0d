"""``edgekit setup-js``: install TF.js's npm packages from edgekit's shipped lock (stdlib at import)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``setup-js`` subcommand."""
    p = subparsers.add_parser(
        "setup-js", help="install TF.js (npm ci from the shipped lock) for verify, bench and the web demo",
        description="Run `npm ci` on edgekit's shipped package-lock.json into a user cache directory "
                    "($EDGEKIT_JS_DIR, else ~/.cache/edgekit/js-<lock hash>). Needs Node.js >= 20 with npm.")
    p.add_argument("--force", action="store_true", help="reinstall even if already installed (default: off)")
    p.add_argument("--print-path", action="store_true",
                   help="only print the node_modules directory (default: off)")
    p.set_defaults(func=_setup_js)


def _setup_js(args: argparse.Namespace) -> int:
    from edgekit.runtime import jsdeps

    if args.print_path:
        print(jsdeps.cache_dir() / "node_modules")
        return 0
    jsdeps.setup_js(force=args.force)
    return 0
