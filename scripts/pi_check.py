"""``make pi-check``: verify every TFLite and ONNX export on an emulated Raspberry Pi.

Builds (or reuses, from a cache outside the checkout) an arm64 Debian bookworm root run through
qemu-user, installs the device side in it from aarch64 wheels downloaded on the host (edgekit's
own wheel with only its base dependencies: numpy, ai-edge-litert, onnxruntime, Jinja2), copies
the exports in, runs ``python -m edgekit.runtime verify`` inside and merges the rows into
``ARTIFACTS/report.json``, ``report.md`` and ``report.html``, labelled e.g.
``ai-edge-litert 2.3.0 aarch64 (emulated cortex-a72)``. Emulated timings are not Pi timings: the
rows keep them only as ``emulated_seconds``. A TFLite file that needs the Flex delegate (manifest
``select_tf_ops``/``flex_ops``, or LiteRT refusing an unresolved ``Flex*`` custom op) gets an
``error`` row saying the Pi runtime cannot load it. Each row also gets ``vs_host_max_abs_diff``:
how far its outputs are from the host's (x86_64) row for the same file, when report.json has one.

Usage::

    sudo .venv/bin/python scripts/pi_check.py [--artifacts artifacts] [--model 4|5]
        [--cache ~/.cache/edgekit/pi-rootfs] [--mirror URL] [--rebuild]

Exit 0: every row passes (or the run is skipped: not root, qemu/debootstrap not installable,
no binfmt_misc — the reason is printed); 1: a row failed or the emulated run broke; 2: bad input.
The emulation traps handled (cpuinfo, QEMU_CPU, binfmt_misc, mounts) are described in pi_root.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pi_root  # noqa: E402  (a sibling script module)
from pi_root import MODELS, Interrupted, Mounts, Skip, log  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: pip platform tags for a 64-bit Pi: ai-edge-litert's aarch64 wheels are manylinux_2_27 (the 2_28 tag
#: alone finds nothing, or an old 1.4.0), onnxruntime's 2_28, numpy's 2014; bookworm's glibc is 2.36.
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
DEVICE_FORMATS = ("tflite", "onnx")
SHARE = "/mnt/edgekit"  # the run directory's place inside the root
VENV = "/opt/edgekit"  # the device install inside the root
DEPS_STAMP = f"{VENV}/.edgekit-deps"
# copied to the device: everything verify reads (it checks every listed file, all formats), not the
# training side
IGNORE = shutil.ignore_patterns("saved_model", "*.keras", "*.png", "screenshots", "report.*", "parity.npz",
                                "bench.json", "*.log", ".*")
FLEX_RE = re.compile(r"Flex[A-Z]\w*|custom op|Select TensorFlow op", re.I)


def pip_download_args(python: str, dest: Path) -> list[str]:
    """``pip download`` arguments for aarch64 wheels only, for CPython ``python`` (e.g. "3.11")."""
    args = ["download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python, "-d", str(dest)]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


def build_wheels(dest: Path) -> tuple[Path, list[Path]]:
    """edgekit's wheel (built from the checkout) and its base dependencies' aarch64 cp311 wheels,
    pinned by constraints.txt, plus the host's pip wheel (to bootstrap the device's venv), in
    ``dest``. Returns ``(edgekit wheel, the other wheels)``."""
    from importlib.metadata import version

    dest.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    r = subprocess.run([py, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--no-build-isolation", "-w", str(dest), str(REPO)], capture_output=True, text=True,
                       cwd=dest)
    if r.returncode != 0:
        raise RuntimeError(f"building edgekit's wheel failed: {r.stderr.strip()[-400:]}")
    (whl,) = dest.glob("edgekit-*.whl")
    r = subprocess.run([py, "-m", "pip", *pip_download_args("3.11", dest), "-c", str(REPO / "constraints.txt"),
                        str(whl), f"pip=={version('pip')}"], capture_output=True, text=True)
    if r.returncode != 0:
        err = "\n".join(ln for ln in r.stderr.splitlines() if "is ignored" not in ln)
        raise RuntimeError(f"pip download of the aarch64 device install failed: {err.strip()[-600:]}")
    return whl, sorted(p for p in dest.glob("*.whl") if p != whl)


def install_device_side(root: Path, env: dict, whl: Path, deps: list[Path], logfile: Path) -> str:
    """The venv at :data:`VENV` inside the root, as on a Pi: ``python3 -m venv``, pip bootstrapped
    from its wheel (:func:`bootstrap_pip`), then the device's own ``pip install`` of the downloaded
    wheels only (no index). The dependencies are reinstalled
    only when the wheel set changed; edgekit's wheel every run. ``--no-compile``: byte-compiling
    every module under emulation costs minutes; verify's first run compiles (and caches) only
    what it imports. Returns "cached" or "installed"."""
    stamp = "\n".join(p.name for p in deps) + "\n"
    py = f"{VENV}/bin/python"
    pip = [py, "-m", "pip", "--disable-pip-version-check", "--no-python-version-warning"]
    wheels = f"{SHARE}/wheels"
    have = root / DEPS_STAMP.lstrip("/")
    state = "cached"
    if not have.is_file() or have.read_text() != stamp:
        state = "installed"
        if (root / VENV.lstrip("/")).exists():
            shutil.rmtree(root / VENV.lstrip("/"))
        (pip_whl,) = [p for p in deps if p.name.startswith("pip-")]
        _device(root, env, ["python3", "-m", "venv", "--without-pip", VENV], logfile, "creating the venv")
        bootstrap_pip(root, pip_whl)
        _device(root, env, [*pip, "install", "--quiet", "--no-index", "--no-compile", "--find-links", wheels,
                            *[f"{wheels}/{p.name}" for p in deps if p != pip_whl]], logfile,
                "installing the dependencies")
        have.write_text(stamp)
    _device(root, env, [*pip, "install", "--quiet", "--no-index", "--no-compile", "--no-deps", "--force-reinstall",
                        f"{wheels}/{whl.name}"], logfile, "installing edgekit's wheel")
    if state == "installed":
        _device(root, env, [*pip, "check"], logfile, "pip check")
    return state


def bootstrap_pip(root: Path, pip_whl: Path) -> None:
    """pip into the device's venv as ensurepip puts it there: its (pure Python) wheel unpacked into
    site-packages, byte-compiled on the host when the host runs the same Python minor version
    (bytecode does not depend on the CPU). Running pip from its wheel under emulation instead
    compiled every pip module on each call: 49-72 s here."""
    import compileall
    import zipfile

    (site,) = (root / VENV.lstrip("/")).glob("lib/python3*/site-packages")
    with zipfile.ZipFile(pip_whl) as z:
        z.extractall(site)
    if site.parent.name == f"python{sys.version_info[0]}.{sys.version_info[1]}":
        compileall.compile_dir(site / "pip", quiet=1, ddir=f"{VENV}/{site.relative_to(root / VENV.lstrip('/'))}/pip")


def _device(root: Path, env: dict, cmd: list[str], logfile: Path, what: str) -> str:
    t = time.monotonic()
    r = pi_root.in_root(root, cmd, env, capture=True)
    with open(logfile, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}  [{time.monotonic() - t:.1f} s, exit {r.returncode}]\n{r.stdout}{r.stderr}\n")
    if r.returncode != 0:
        raise RuntimeError(f"{what} in the emulated root failed (exit {r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()[-600:]}")
    return r.stdout


def device_versions(root: Path, env: dict, logfile: Path) -> dict[str, str]:
    """Python, machine and runtime versions as the device sees them."""
    code = ("import importlib.metadata as m, json, platform; print(json.dumps({'python': platform.python_version(),"
            " 'machine': platform.machine(), **{d: m.version(d) for d in "
            "('ai-edge-litert', 'onnxruntime', 'numpy', 'edgekit')}}))")
    return json.loads(_device(root, env, [f"{VENV}/bin/python", "-c", code], logfile, "reading versions"))


def flagged_flex(artifacts: Path) -> dict[tuple[str, str], list[str]]:
    """TFLite files whose manifest entry says they need the Flex delegate (``select_tf_ops`` /
    ``flex_ops``, written by the TFLite exporter): {(example, precision): [Flex ops]}."""
    from edgekit.parity.targets import find_manifests, load_target

    out: dict[tuple[str, str], list[str]] = {}
    for m in find_manifests(artifacts):
        target = load_target(m)
        for art, _path in target.artifacts:
            raw = getattr(art, "raw", None) or {}
            if art.format == "tflite" and (raw.get("select_tf_ops") or raw.get("flex_ops")):
                out[(target.example, art.precision)] = list(raw.get("flex_ops") or [])
    return out


def relabel(rows: list[dict], device_art: str, artifacts: Path, versions: dict, model: str,
            flex: dict[tuple[str, str], list[str]]) -> list[dict]:
    """Device rows as host report rows: runtime labelled aarch64 + emulated CPU, paths mapped back to
    the host's artifacts, timings kept only as ``emulated_seconds``, Flex files refused."""
    info = MODELS[model]
    cpu = info["qemu_cpu"]
    out = []
    for r in rows:
        r = dict(r)
        for key in ("path", "example_dir"):
            if r.get(key) and str(r[key]).startswith(device_art):
                r[key] = str(artifacts.resolve() / os.path.relpath(r[key], device_art))
        runtime = r.get("runtime") or r["format"]
        r["runtime"] = f"{runtime} aarch64 (emulated {cpu})"
        r["device"] = (f"{info['device']}, emulated: qemu-user {cpu}, Debian {pi_root.SUITE} arm64, "
                       f"Python {versions['python']}")
        r["emulated_seconds"] = r.pop("seconds", None)  # qemu-user time: not a Pi latency
        r["seconds"] = None
        ops = flex.get((r["example"], r["precision"])) if r["format"] == "tflite" else None
        if r["format"] == "tflite" and (ops is not None or (r["status"] != "pass"
                                                            and FLEX_RE.search(r.get("message") or ""))):
            named = f" ({', '.join(ops)})" if ops else ""
            r["status"] = "error"
            r["message"] = (f"needs the Flex delegate (SELECT_TF_OPS{named}): the Pi runtime, {runtime} "
                            "aarch64, has no Flex delegate and cannot load it"
                            + (f"; device said: {r['message']}" if r.get("message") else ""))
        out.append(r)
    return out


def compare_with_host(rows: list[dict], parity: dict, old: list[dict], old_parity: dict) -> tuple[int, int]:
    """Set ``vs_host_max_abs_diff`` on each device row: the largest difference between its outputs
    and the host's (x86_64) row for the same file in the existing report.json. Returns
    ``(rows identical to the host's, rows compared)``."""
    host = {(r["example"], r["format"], r["precision"], r.get("path")): r for r in old
            if not r.get("device") and not r.get("backend")}
    same = compared = 0
    for r in rows:
        h = host.get((r["example"], r["format"], r["precision"], r.get("path")))
        if h is None:
            continue
        diffs = []
        for o in r.get("outputs") or []:
            a, b = parity.get(f"row{r.get('id')}__{o['name']}"), old_parity.get(f"row{h.get('id')}__{o['name']}")
            if a is None or b is None or a.shape != b.shape:
                diffs = []
                break
            d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            diffs.append(float(np.nanmax(d)) if d.size else 0.0)
        if diffs:
            compared += 1
            r["vs_host_max_abs_diff"] = max(diffs)
            same += max(diffs) == 0.0
    return same, compared


def merge_report(artifacts: Path, rows: list[dict], parity: dict) -> tuple[Path, Path, tuple[int, int]]:
    """Add the device rows to ARTIFACTS/report.json (replacing an earlier pi-check's on the same
    emulated device; a Pi 4 and a Pi 5 run sit side by side), then write
    report.md and report.html through edgekit's own report writers. Returns the two paths and
    :func:`compare_with_host`'s counts."""
    from edgekit.report.files import load_reports, write_reports
    from edgekit.report.html import write_html

    json_path = artifacts / "report.json"
    old, old_parity = (load_reports(json_path) if json_path.is_file() else ([], {}))
    vs_host = compare_with_host(rows, parity, old, old_parity)
    devices = {r["device"] for r in rows}  # an earlier run on the same emulated device is replaced
    drop = {r.get("id") for r in old if r.get("device") in devices}
    kept = [r for r in old if r.get("device") not in devices]
    merged_parity = {k: v for k, v in old_parity.items()
                     if not (k.startswith("row") and _row_id(k) in drop)}
    next_id = max([int(r["id"]) for r in kept if isinstance(r.get("id"), int)] + [-1]) + 1
    for r in rows:
        old_id, r["id"] = r.get("id"), next_id
        next_id += 1
        for k, v in parity.items():
            if k.startswith("row") and _row_id(k) == old_id:
                merged_parity[f"row{r['id']}__{k.split('__', 1)[1]}"] = v
    for k, v in parity.items():
        if "__keras__" in k:
            merged_parity.setdefault(k, v)
    all_rows = kept + rows
    write_reports(all_rows, merged_parity, json_path, artifacts / "report.md")
    html = write_html(all_rows, merged_parity, artifacts, artifacts / "report.html")
    return json_path, html, vs_host


def _row_id(key: str) -> int | None:
    m = re.match(r"row(\d+)__", key)
    return int(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pi-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", type=Path, default=Path(os.environ.get("ARTIFACTS") or "artifacts"),
                   help="the exports to verify (default: $ARTIFACTS or artifacts)")
    p.add_argument("--model", choices=sorted(MODELS), default=os.environ.get("PI_MODEL") or "4",
                   help="the Pi emulated: 4 = cortex-a72, 5 = cortex-a76 (default: $PI_MODEL or 4)")
    p.add_argument("--cache", type=Path,
                   default=Path(os.environ.get("PI_CACHE") or Path.home() / ".cache" / "edgekit" / "pi-rootfs"),
                   help="where the arm64 root and runs live, outside the checkout "
                        "(default: $PI_CACHE or ~/.cache/edgekit/pi-rootfs)")
    p.add_argument("--mirror", default=None, help="Debian mirror (default: $PI_MIRROR or the host's apt source)")
    p.add_argument("--rebuild", action="store_true", help="build the root from scratch (default: reuse it)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    from edgekit.core.errors import EdgekitError

    try:
        from edgekit.parity.targets import find_manifests

        find_manifests(args.artifacts)
    except EdgekitError as exc:
        print(f"pi-check: error: {exc}", file=sys.stderr)
        return 2
    cache = args.cache.expanduser().resolve()
    if cache == REPO or REPO in cache.parents:
        print(f"pi-check: error: the cache must live outside the checkout; got {cache}", file=sys.stderr)
        return 2
    try:
        pi_root.ensure_tools()
        flex = flagged_flex(args.artifacts)  # loads every manifest: bad exports stop here, exit 2
        with pi_root.signals_raise():
            return _run(args, cache, flex, t0)
    except EdgekitError as exc:
        print(f"pi-check: error: {exc}", file=sys.stderr)
        return 2
    except Skip as exc:
        print(f"pi-check: SKIPPED: {exc}", file=sys.stderr)
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"pi-check: interrupted ({exc or 'SIGINT'}); mounts undone", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"pi-check: error: {exc}", file=sys.stderr)
        return 1


def _run(args, cache: Path, flex: dict, t0: float) -> int:
    import fcntl

    model, info = args.model, MODELS[args.model]
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "pi-check.lock", "w") as lock:
        try:  # one run at a time per root: a second run's mounts would stack on (and be undone by) the first's
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another pi-check using {cache}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_locked(args, cache, flex, t0, model, info)


def _run_locked(args, cache: Path, flex: dict, t0: float, model: str, info: dict) -> int:
    with Mounts() as host:  # binfmt_misc, if mounted here
        pi_root.ensure_binfmt(host)
        root, built = pi_root.ensure_root(cache, args.mirror or pi_root.default_mirror(), args.rebuild)
        log(f"root: {root} ({f'built in {built:.0f} s' if built else 'cached'})")
        (cache / "runs").mkdir(parents=True, exist_ok=True)
        for old in sorted((cache / "runs").glob("run-*.log"), key=lambda f: f.stat().st_mtime)[:-9]:
            old.unlink()  # keep the last ten logs
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=cache / "runs"))
        logfile = run_dir.parent / f"{run_dir.name}.log"
        try:
            t = time.monotonic()
            whl, deps = build_wheels(run_dir / "wheels")
            log(f"wheels: {whl.name} + {len(deps)} aarch64 dependencies in {time.monotonic() - t:.0f} s")
            art = run_dir / "art"
            src = args.artifacts.resolve()
            shutil.copytree(src, art, ignore=IGNORE, symlinks=False)
            env = pi_root.device_env(info["qemu_cpu"])
            with Mounts(root) as m:
                pi_root.enter(m, root, model, run_dir, SHARE)
                t = time.monotonic()
                state = install_device_side(root, env, whl, deps, logfile)
                versions = device_versions(root, env, logfile)
                log(f"device install ({state}) in {time.monotonic() - t:.0f} s: Python {versions['python']} "
                    f"{versions['machine']}, ai-edge-litert {versions['ai-edge-litert']}, onnxruntime "
                    f"{versions['onnxruntime']}, numpy {versions['numpy']}; QEMU_CPU={info['qemu_cpu']}")
                t = time.monotonic()
                r = pi_root.in_root(root, [f"{VENV}/bin/python", "-m", "edgekit.runtime", "verify", f"{SHARE}/art",
                                           "--formats", *DEVICE_FORMATS, "--json", f"{SHARE}/device/report.json",
                                           "--md", f"{SHARE}/device/report.md"], env, capture=True)
                emulated = time.monotonic() - t
            with open(logfile, "a") as fh:
                fh.write(f"$ verify\n{r.stdout}{r.stderr}\n")
            if r.returncode not in (0, 1) or not (run_dir / "device" / "report.json").is_file():
                raise RuntimeError(f"python -m edgekit.runtime verify in the emulated root failed (exit "
                                   f"{r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
            from edgekit.report.files import load_reports
            from edgekit.report.tables import format_table, summary_line

            dev_rows, parity = load_reports(run_dir / "device" / "report.json")
            rows = relabel(dev_rows, f"{SHARE}/art", args.artifacts, versions, model, flex)
            json_path, html, (same, compared) = merge_report(args.artifacts, rows, parity)
        finally:
            pi_root.remove_tree(run_dir)
    print(format_table(rows))
    print(f"{info['device']} (emulated {info['qemu_cpu']}): {summary_line(rows)}")
    print(f"emulated verify: {emulated:.0f} s under qemu-user (emulated time, not Pi latency); "
          f"pi-check total {time.monotonic() - t0:.0f} s; log {logfile}")
    if compared:
        print(f"outputs identical to the host's (x86_64) run: {same} of {compared} rows; largest difference "
              f"{max(r.get('vs_host_max_abs_diff') or 0.0 for r in rows):.3g}")
    else:
        print(f"no host rows in {json_path} to compare outputs with (run edgekit verify first)")
    print(f"merged into {json_path} and {html}")
    return 0 if rows and all(r["status"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
