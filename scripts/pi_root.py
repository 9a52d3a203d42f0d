"""An emulated Raspberry Pi: an arm64 Debian root run through qemu-user, with its mounts undone.

Used by ``scripts/pi_check.py`` (``make pi-check``). Standard library only; needs root.

The traps it handles (measured here, see /work/shared/STACK.md "Raspberry Pi"):

* **cpuinfo.** Under qemu-user ``/proc/cpuinfo`` is the x86 host's, and both ai-edge-litert and
  onnxruntime segfault parsing it on aarch64. A Raspberry Pi's cpuinfo (:data:`CPUINFO`) is
  bind-mounted over ``/proc/cpuinfo`` inside the root.
* **CPU model.** QEMU's default model ``max`` has SME, and the runtimes' SME int8 kernels give
  wrong results under it (max |diff| 1.45 against 0.026). ``QEMU_CPU`` is set to the Pi's core:
  ``cortex-a72`` (Pi 4) or ``cortex-a76`` (Pi 5).
* **sysfs.** The runtimes' cpuinfo library reads ``/sys/devices/system/cpu/{possible,present}``;
  a Pi's four-core lists are bind-mounted there (the host's /sys is not mounted in the root).
* **binfmt_misc.** Mounted if it is not, and ``qemu-aarch64`` enabled, so the root's binaries run.
* **Mounts.** Every mount is recorded on a :class:`Mounts` stack and undone when the ``with``
  block ends, by success, failure, Ctrl-C or SIGTERM/SIGHUP (turned into an exception by
  :func:`signals_raise`); leftovers under the root (e.g. from an interrupted debootstrap) are
  found in ``/proc/self/mountinfo`` and unmounted too. A directory is deleted only when no mount
  remains under it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

#: the Pi models emulated: QEMU CPU model, a label, and the /proc/cpuinfo a Pi of that model shows.
_PI4_CORE = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
_PI5_CORE = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1
"""
MODELS = {
    "4": {"qemu_cpu": "cortex-a72", "device": "Raspberry Pi 4",
          "cpuinfo": "\n".join(_PI4_CORE.format(n=n) for n in range(4))
          + "\nHardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000e1d2c3b4\n"
            "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"},
    "5": {"qemu_cpu": "cortex-a76", "device": "Raspberry Pi 5",
          "cpuinfo": "\n".join(_PI5_CORE.format(n=n) for n in range(4))
          + "\nRevision\t: d04170\nSerial\t\t: e1d2c3b4a5968778\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"},
}

SUITE = "bookworm"  # Raspberry Pi OS 12 is bookworm: Python 3.11, like edgekit's lock
#: what the root holds beyond minbase: Python. Not python3-venv: its ensurepip would pull in
#: ca-certificates and openssl (configured under emulation: slow); the venv is made
#: ``--without-pip`` and pip bootstrapped from its wheel, downloaded on the host.
PACKAGES = ("python3",)
#: bump when the recipe changes: the cached root is keyed by it.
RECIPE = f"1 {SUITE} arm64 minbase {' '.join(PACKAGES)}"
STAMP = "etc/edgekit-pi-root"
BINFMT = Path("/proc/sys/fs/binfmt_misc")


class Skip(Exception):
    """The emulated run cannot happen on this machine (not root, no qemu, no binfmt_misc): the reason."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (undo the mounts) and stop."""


def log(msg: str) -> None:
    print(f"pi-check: {msg}", flush=True)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Interrupted` (Ctrl-C already raises KeyboardInterrupt)."""
    def handler(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    base = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if mp == base or mp.startswith(base + "/"):
                found.append(mp)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _umount(mp: str) -> None:
    if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", mp], capture_output=True)  # busy (a child still exiting): detach


class Mounts:
    """A stack of mounts, undone in reverse order on exit; then anything left under ``root``."""

    def __init__(self, root: Path | None = None):
        self.root = root
        self.stack: list[str] = []

    def __enter__(self) -> Mounts:
        return self

    def mount(self, *args: str, target: Path) -> None:
        """``mount ARGS... TARGET``, recorded for undoing."""
        target.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mount {' '.join(args)} {target} failed: {r.stderr.strip()}")
        self.stack.append(str(target))

    def bind(self, src: Path, target: Path, readonly: bool = False) -> None:
        """Bind-mount ``src`` at ``target`` (a file or a directory), optionally read-only."""
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        self.mount("--bind", str(src), target=target)
        if readonly:
            self.mount("-o", "remount,bind,ro", target=target)
            self.stack.pop()  # the remount is the same mount point

    def close(self) -> None:
        """Undo every mount (reverse order), then any mount still under ``root``."""
        while self.stack:
            _umount(self.stack.pop())
        if self.root is not None:
            for mp in mounts_under(self.root):
                _umount(mp)

    def __exit__(self, *exc) -> None:
        # a second Ctrl-C must not leave mounts behind: block SIGINT while undoing
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.close()
        finally:
            signal.signal(signal.SIGINT, old)


def release_leftovers(path: Path) -> list[str]:
    """Unmount anything still mounted under ``path`` (a run killed with SIGKILL cannot undo its
    mounts); returns what was found."""
    found = mounts_under(path)
    for mp in found:
        _umount(mp)
    return found


def remove_tree(path: Path) -> None:
    """Delete ``path`` only if nothing is mounted under it (never delete through a bind mount)."""
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- preconditions
def ensure_tools(install: bool = True) -> None:
    """Root, qemu-aarch64-static and debootstrap (apt-installed if missing and ``install``).

    Raises:
        Skip: not root, or the tools are missing and cannot be installed.
    """
    if os.geteuid() != 0:
        raise Skip(f"needs root (debootstrap, chroot and mounts); running as uid {os.geteuid()}")
    missing = [t for t in ("qemu-aarch64-static", "debootstrap", "update-binfmts") if not shutil.which(t)]
    if not missing:
        return
    if not install or not shutil.which("apt-get"):
        raise Skip(f"missing {', '.join(missing)} and no apt-get to install qemu-user-static debootstrap "
                   "binfmt-support")
    log(f"installing qemu-user-static debootstrap binfmt-support (missing: {', '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    pkgs = ["qemu-user-static", "debootstrap", "binfmt-support"]
    r = subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise Skip(f"cannot install {' '.join(pkgs)} with apt-get: {tail}")


def ensure_binfmt(mounts: Mounts) -> None:
    """binfmt_misc mounted (recorded on ``mounts`` if mounted here) and qemu-aarch64 enabled.

    Raises:
        Skip: binfmt_misc cannot be mounted or qemu-aarch64 cannot be registered.
    """
    if not (BINFMT / "register").exists():
        try:
            mounts.mount("-t", "binfmt_misc", "binfmt_misc", target=BINFMT)
        except RuntimeError as exc:
            raise Skip(f"cannot mount binfmt_misc (a container without the privilege?): {exc}") from None
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise Skip("qemu-aarch64 is not registered in binfmt_misc (update-binfmts --enable qemu-aarch64 failed)")
    if "F" not in next((ln.split(":", 1)[1] for ln in entry.read_text().splitlines() if ln.startswith("flags:")),
                       ""):
        raise Skip("qemu-aarch64's binfmt entry lacks the F (fix binary) flag; the chroot could not find qemu")


# ---------------------------------------------------------------- the root
def default_mirror() -> str:
    """The Debian mirror: $PI_MIRROR, else the host's own apt source (deb822 or one-line), else deb.debian.org."""
    if os.environ.get("PI_MIRROR"):
        return os.environ["PI_MIRROR"]
    for f in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if line.startswith("URIs:") and len(parts) > 1 and "security" not in parts[1]:
                return parts[1]
            if parts[:1] == ["deb"] and "security" not in line:
                return next(p for p in parts[1:] if "://" in p)
    return "http://deb.debian.org/debian"


def root_dir(cache: Path) -> Path:
    """The cached root for the current recipe: ``<cache>/<suite>-arm64-<recipe hash>``."""
    return cache / f"{SUITE}-arm64-{hashlib.sha256(RECIPE.encode()).hexdigest()[:10]}"


def ensure_root(cache: Path, mirror: str, rebuild: bool = False) -> tuple[Path, float]:
    """The arm64 Debian root, built by debootstrap unless cached (built under a temporary name,
    renamed when complete). Returns ``(root, seconds spent building; 0 if cached)``."""
    root = root_dir(cache)
    for stale in [*cache.glob(".build-*"), *(cache / "runs").glob("run-*")]:  # from a run killed with SIGKILL
        if stale.is_dir():
            release_leftovers(stale)
            remove_tree(stale)
    left = release_leftovers(root)
    if left:
        log(f"unmounted {len(left)} mount(s) a killed run left in the root: {', '.join(left)}")
    if rebuild and root.exists():
        remove_tree(root)
    if (root / STAMP).is_file():
        return root, 0.0
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".build-{root.name}-{os.getpid()}"
    t0 = time.monotonic()
    log(f"building the arm64 {SUITE} root from {mirror} (debootstrap, both stages; minutes) -> {root}")
    try:
        with Mounts(tmp):  # debootstrap mounts proc/sys in the target; undone here if it dies
            cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                   SUITE, str(tmp), mirror]
            r = run_logged(cmd, cache / "debootstrap.log")
            if r != 0:
                raise RuntimeError(f"debootstrap failed (exit {r}); see {cache / 'debootstrap.log'}")
        (tmp / STAMP).write_text(RECIPE + "\n")
        if root.exists():
            remove_tree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            remove_tree(tmp)
    return root, time.monotonic() - t0


def run_logged(cmd: Sequence[str], logfile: Path, env: dict | None = None) -> int:
    """Run ``cmd`` with its output appended to ``logfile``; the child is ended if we are interrupted."""
    with open(logfile, "ab") as fh:
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env)
        return _wait(proc)


def _wait(proc: subprocess.Popen) -> int:
    try:
        return proc.wait()
    except BaseException:
        _wait_kill(proc)
        raise


def device_env(qemu_cpu: str) -> dict[str, str]:
    """The environment inside the root: a clean one, with QEMU_CPU naming the Pi's core."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "QEMU_CPU": qemu_cpu,
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def in_root(root: Path, cmd: Sequence[str], env: dict[str, str], capture: bool = False,
            ) -> subprocess.CompletedProcess:
    """Run ``cmd`` chrooted into ``root`` (interruptible; the child is ended on the way out)."""
    full = ["chroot", str(root), *cmd]
    if capture:
        proc = subprocess.Popen(full, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate()
        except BaseException:
            _wait_kill(proc)
            raise
        return subprocess.CompletedProcess(full, proc.returncode, out, err)
    proc = subprocess.Popen(full, env=env)
    return subprocess.CompletedProcess(full, _wait(proc))


def _wait_kill(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def enter(mounts: Mounts, root: Path, model: str, share: Path, share_at: str) -> None:
    """Mount what a run needs inside ``root``: /proc, the Pi's cpuinfo over /proc/cpuinfo, its CPU
    lists at /sys/devices/system/cpu, /dev, and ``share`` (the host's run directory) at ``share_at``."""
    info = MODELS[model]
    cpuinfo = share / "cpuinfo"
    cpuinfo.write_text(info["cpuinfo"])
    cpus = share / "sys-cpu"
    cpus.mkdir(exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text("0-3\n")  # every Pi 4 and Pi 5 has four cores
    mounts.mount("-t", "proc", "proc", target=root / "proc")
    mounts.bind(cpuinfo, root / "proc" / "cpuinfo", readonly=True)
    mounts.bind(cpus, root / "sys" / "devices" / "system" / "cpu", readonly=True)
    mounts.bind(Path("/dev"), root / "dev")
    mounts.bind(share, root / share_at.lstrip("/"))


if __name__ == "__main__":  # pragma: no cover - a manual aid: list mounts left under a path
    print("\n".join(mounts_under(Path(sys.argv[1]))) or "no mounts")
