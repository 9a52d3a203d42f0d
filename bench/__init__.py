"""``edgekit bench``: latency, throughput, size, load time and memory of every exported variant.

``edgekit.bench(...)`` (this package, called) runs :func:`edgekit.bench.run.bench`.

Layout (one job per module):

- :mod:`edgekit.bench.plan` finds the export manifests and builds the list of cases (rows to measure),
  the input arrays and the parity lookup from ``report.json``;
- :mod:`edgekit.bench.cases` opens one case (an edgekit adapter, the raw runtime call, or a Keras /
  SavedModel baseline) and hands back its batch-1 and batch-N callables;
- :mod:`edgekit.bench.timing` times them (warm-up, time-boxed repetitions, p50/p99, throughput);
- :mod:`edgekit.bench.worker` measures a list of cases in a child process with a fixed thread count;
- :mod:`edgekit.bench.rss_probe` is the separate process that only loads and runs one model (peak RSS);
- :mod:`edgekit.bench.progress` prints a line per finished case with the ETA; the worker honours
  the total ``--budget`` (a fair share per case, skipped rows for what does not fit);
- :mod:`edgekit.bench.flops` counts each graph's FLOPs, :mod:`edgekit.bench.peak` measures the
  fp32/int8 GEMM peaks (each row's GFLOP/s and % of peak);
- :mod:`edgekit.bench.baselines` converts with Keras' own exports and the raw converters
  (``--compare-exports``); :mod:`edgekit.bench.tune` picks and records runtime settings (``--tune``);
- :mod:`edgekit.bench.run` orchestrates everything and writes ``bench.json``; :mod:`edgekit.bench.checks`
  evaluates the issue's targets; :mod:`edgekit.report.bench_section` renders the report.html section.
"""

from edgekit.core.callmod import make_callable

make_callable(__name__, "edgekit.bench.run:bench")
