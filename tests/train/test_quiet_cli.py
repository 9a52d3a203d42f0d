"""TensorFlow's C++ start-up chatter stays out of the terminal (issue 17): a fresh ``edgekit`` process."""

import os
import subprocess
import sys


def test_train_in_a_fresh_process_prints_nothing_on_stderr(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the CLI picks the level
    p = subprocess.run([sys.executable, "-c", "import sys; from edgekit.cli import main; sys.exit(main())",
                        "train", "and_gate", "--quick", "--jobs", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "and_gate" in p.stdout
    assert p.stderr == ""  # no "Unable to register cuDNN factory", absl or cuInit lines


def test_quiet_hook_keeps_the_real_loader_and_removes_itself():
    code = ("import sys, os; from edgekit.cli import _quiet; _quiet.install(); import tensorflow as tf; "
            "assert _quiet._FINDER not in sys.meta_path; "
            "assert type(tf.__spec__.loader).__name__ != '_QuietLoader', tf.__spec__.loader; "
            "assert tf.__loader__ is tf.__spec__.loader; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "3" and "cuDNN" not in p.stderr and "absl" not in p.stderr


def test_export_and_verify_print_nothing_on_stderr(tmp_path):
    """verify's LiteRT rows used to print "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def run(*args):
        return subprocess.run([sys.executable, "-c", "import sys; from edgekit.cli import main; sys.exit(main())",
                               *args], capture_output=True, text=True, env=env, timeout=300)

    assert run("train", "and_gate", "--quick", "--jobs", "1", "--out", str(tmp_path)).returncode == 0
    ex = str(tmp_path / "and_gate")
    e = run("export", ex, "--formats", "tflite,onnx", "--precisions", "fp32")
    assert e.returncode == 0 and e.stderr == "", e.stderr
    v = run("verify", ex)
    assert v.returncode == 0 and "tflite" in v.stdout, v.stdout + v.stderr
    assert v.stderr == "", v.stderr
