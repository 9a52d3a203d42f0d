"""``edgekit bench``: latency, throughput, size, load time and memory of every exported variant.

Layout (one job per module):

- :mod:`bench.plan` finds the export manifests and builds the list of cases (rows to measure),
  the input arrays and the parity lookup from ``report.json``;
- :mod:`bench.cases` opens one case (an edgekit adapter, the raw runtime call, or a Keras /
  SavedModel baseline) and hands back its batch-1 and batch-N callables;
- :mod:`bench.timing` times them (warm-up, time-boxed repetitions, p50/p99, throughput);
- :mod:`bench.worker` measures a list of cases in a child process with a fixed thread count;
- :mod:`bench.rss_probe` is the separate process that only loads and runs one model (peak RSS);
- :mod:`bench.run` orchestrates everything and writes ``bench.json``; :mod:`bench.checks`
  evaluates the issue's targets; :mod:`bench.html` renders the report.html section.
"""
