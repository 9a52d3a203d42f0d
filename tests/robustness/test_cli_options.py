"""Unknown or malformed command-line options, in real processes (``.venv/bin/edgekit`` and
``python -m edgekit.runtime``): exit 2, one line on stderr (argparse's usage block is not printed),
no traceback, nothing written."""

from __future__ import annotations

import pytest
from _robust import assert_one_line_error, diff_snapshots, run_cli, snapshot

# case -> (argv with {ex} / {tmp} placeholders, python -m runtime?, words in the error line)
CASES = {
    "top-level-unknown-option": (["--frobnicate", "verify", "{ex}"], False, ["unrecognized arguments: --frobnicate"]),
    "unknown-command": (["deploy", "{ex}"], False, ["invalid choice: 'deploy'"]),
    "train-unknown-option": (["train", "and_gate", "--out", "{tmp}/a", "--epochs", "3"], False,
                             ["unrecognized arguments: --epochs 3"]),
    "train-seed-not-int": (["train", "and_gate", "--out", "{tmp}/a", "--seed", "x"], False,
                           ["argument --seed: invalid int value: 'x'"]),
    "export-unknown-option": (["export", "{ex}", "--out", "{tmp}/e", "--unsafe-mode"], False,
                              ["unrecognized arguments: --unsafe-mode"]),
    "export-opset-not-int": (["export", "{ex}", "--out", "{tmp}/e", "--opset", "seventeen"], False,
                             ["argument --opset: invalid int value"]),
    "verify-unknown-option": (["verify", "{ex}", "--tolerant"], False, ["unrecognized arguments: --tolerant"]),
    "verify-unknown-format": (["verify", "{ex}", "--formats", "keras"], False,
                              ["argument --formats: invalid choice: 'keras'"]),
    "verify-jobs-zero": (["verify", "{ex}", "--jobs", "0"], False, ["--jobs must be >= 1"]),
    "report-unknown-option": (["report", "{ex}", "--pdf"], False, ["unrecognized arguments: --pdf"]),
    "serve-web-unknown-option": (["serve-web", "--artifacts", "{ex}", "--public"], False,
                                 ["unrecognized arguments: --public"]),
    "runtime-module-unknown-option": (["verify", "{ex}", "--json-out", "{tmp}/r.json"], True,
                                      ["unrecognized arguments: --json-out"]),
    "runtime-module-export-not-offered": (["export", "{ex}"], True, ["invalid choice: 'export'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_option_exit_2_one_line_nothing_written(case, fresh, tmp_path):
    ex = fresh()
    argv, runtime, words = CASES[case]
    argv = [a.replace("{ex}", str(ex)).replace("{tmp}", str(tmp_path)) for a in argv]
    before = snapshot(tmp_path)
    proc = run_cli(argv, runtime=runtime)
    prefix = "python -m edgekit.runtime" if runtime else "edgekit"
    assert_one_line_error(proc, 2, *words, prefix=prefix)
    assert proc.stdout == ""
    assert diff_snapshots(before, snapshot(tmp_path)) == []
