"""Silence converter chatter for the duration of an export (``export_model(quiet=True)``)."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_output(enabled: bool):
    """Silence converter chatter (Python prints, logging, tqdm bars, native stderr) for the block."""
    if not enabled:
        yield
        return
    import io
    import logging
    import warnings

    env_before = {k: os.environ.get(k) for k in ("TF_CPP_MIN_LOG_LEVEL", "TQDM_DISABLE")}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TQDM_DISABLE", "1")
    saved_fds = []
    sink = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        sink = open(os.devnull, "w")  # noqa: SIM115 - closed in finally
        for fd in (1, 2):
            try:
                saved_fds.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
    except OSError:
        pass
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(old_level)
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for fd, saved in reversed(saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        if sink is not None:
            sink.close()


