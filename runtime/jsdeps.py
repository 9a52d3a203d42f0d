"""TF.js's npm packages for an installed edgekit: shipped lock, user cache, one ``npm ci``.

The wheel carries ``package.json`` and ``package-lock.json`` (this package's ``js/``);
:func:`setup_js` installs exactly that lock with ``npm ci`` into a cache directory keyed by the
lock's hash (``$EDGEKIT_JS_DIR``, else ``$XDG_CACHE_HOME/edgekit/js-<hash>``, else
``~/.cache/edgekit/js-<hash>``), built in a temporary sibling and renamed into place, so a
half-finished install is never used. :func:`node_modules_dir` finds it (or
``$EDGEKIT_NODE_MODULES``) for the Node runner, bench and the web page. ``edgekit setup-js``
(or ``make setup``) runs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from edgekit.core.errors import DependencyError, RuntimeFailure
from edgekit.core.text import tail

LOCK_FILES = ("package.json", "package-lock.json")
#: npm packages each TF.js backend needs (the wasm backend also ships its .wasm binaries).
NPM_PACKAGES = {"cpu": ("@tensorflow/tfjs",), "wasm": ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm")}
INSTALL_HINT = "edgekit setup-js (runs npm ci from edgekit's shipped lock)"


def lock_dir() -> Path:
    """The directory of the shipped ``package.json`` / ``package-lock.json``."""
    return Path(str(resources.files("edgekit.runtime") / "js"))


def lock_hash() -> str:
    """First 12 hex digits of the sha256 of the shipped lock files (names the cache directory)."""
    h = hashlib.sha256()
    for name in LOCK_FILES:
        h.update((lock_dir() / name).read_bytes())
    return h.hexdigest()[:12]


def cache_dir() -> Path:
    """Where :func:`setup_js` installs: ``$EDGEKIT_JS_DIR`` or the user cache (see module doc)."""
    env = os.environ.get("EDGEKIT_JS_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit" / f"js-{lock_hash()}"


def installed(root: Path, backend: str = "wasm") -> bool:
    """True if ``root`` holds every npm package ``backend`` needs."""
    return all((root / pkg / "package.json").is_file() for pkg in NPM_PACKAGES[backend])


def modules_root() -> Path:
    """``$EDGEKIT_NODE_MODULES`` if set, else ``<cache_dir()>/node_modules`` (not checked)."""
    env = os.environ.get("EDGEKIT_NODE_MODULES")
    return Path(env) if env else cache_dir() / "node_modules"


def node_modules_dir(backend: str = "cpu") -> Path:
    """The ``node_modules`` holding the TF.js packages the backend needs.

    ``$EDGEKIT_NODE_MODULES`` if set, else ``<cache_dir()>/node_modules``.

    Raises:
        DependencyError: a package is missing (the message gives the install command).
    """
    root = modules_root()
    for pkg in NPM_PACKAGES[backend]:
        if not (root / pkg / "package.json").is_file():
            raise DependencyError(f"npm package {pkg} is missing for the TF.js {backend} backend",
                                  got=f"nothing at {root / pkg}", expected=INSTALL_HINT)
    return root


def npm_executable() -> str:
    """Path of ``npm`` (``$EDGEKIT_NPM`` or PATH). Raises DependencyError if absent."""
    npm = os.environ.get("EDGEKIT_NPM") or shutil.which("npm")
    if not npm:
        raise DependencyError("npm is needed to install TF.js", got="no `npm` on PATH",
                              expected="Node.js >= 20 with npm on PATH (or $EDGEKIT_NPM)")
    return npm


def setup_js(force: bool = False, log=print) -> Path:
    """Install the shipped lock with ``npm ci`` into :func:`cache_dir` unless already there.

    Args:
        force: reinstall even when the packages are present (default False).
        log: where progress lines go (default ``print``).

    Returns:
        The ``node_modules`` directory.

    Raises:
        DependencyError: npm is missing.
        RuntimeFailure: ``npm ci`` failed (its last lines are in the message).
    """
    final = cache_dir()
    if not force and installed(final / "node_modules"):
        log(f"setup-js: TF.js already installed in {final}")
        return final / "node_modules"
    npm = npm_executable()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-p{os.getpid()}-", dir=final.parent))
    try:
        for name in LOCK_FILES:
            shutil.copyfile(lock_dir() / name, tmp / name)
        log(f"setup-js: npm ci into {final} (from edgekit's package-lock.json) ...")
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeFailure("npm ci failed", got=f"exit {proc.returncode}: {tail(proc.stderr)}",
                                 expected="a reachable npm registry (or a populated npm cache)")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"setup-js: installed {', '.join(NPM_PACKAGES['wasm'])} in {final / 'node_modules'}")
    return final / "node_modules"
