# edgekit — the two commands a newcomer needs:
#   make all    set up if needed, then train, export, verify and report every example
#   make test   set up if needed, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
EDGEKIT := $(VENV)/bin/edgekit
ARTIFACTS ?= artifacts
PYTEST_ARGS ?=

.PHONY: all setup chromium test test-all train export verify report pipeline serve-web bench pi-check lint clean help

help:
	@echo "make all | setup | test | test-all | train | export | verify | report | serve-web | bench | pi-check | lint | clean"

all: setup train pipeline

# setup is idempotent: each stamp is rebuilt only when its lock file changes.
setup: $(VENV)/.stamp $(VENV)/.js-stamp chromium

$(VENV)/.stamp: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found; expected Python 3.11 on PATH" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# constraints.txt is a full lock (pip freeze): install exactly it, then the project itself,
	# then let pip confirm the set is consistent.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(PY) -m pip check
	touch $@

# TF.js for verify, bench and the web demo: `npm ci` of the lock shipped inside the package
# (runtime/js/package-lock.json) into the user cache (~/.cache/edgekit/js-<lock hash>).
$(VENV)/.js-stamp: $(VENV)/.stamp runtime/js/package.json runtime/js/package-lock.json
	@command -v npm >/dev/null || { echo "setup: npm not found; expected Node.js 20 with npm" >&2; exit 2; }
	$(EDGEKIT) setup-js
	touch $@

# Debian's chromium for the browser checks (apt needs root; skipped with a note otherwise).
chromium:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)) \
	  && echo "setup: installed Debian chromium"; \
	else echo "setup: chromium missing and not root: browser tests will be skipped" >&2; fi

test: setup lint
	$(PY) -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

train: setup
	$(EDGEKIT) train all --out $(ARTIFACTS)

# A failing variant must not hide the others: export, verify and report always all run,
# and the target fails afterwards if any of them did.
export: setup
	$(EDGEKIT) export $(ARTIFACTS)

verify: setup
	$(EDGEKIT) verify $(ARTIFACTS)

report: setup
	$(EDGEKIT) report $(ARTIFACTS)

pipeline: setup
	@rc=0; \
	$(EDGEKIT) export $(ARTIFACTS) || rc=1; \
	if command -v chromium >/dev/null; then browser=--browser; else browser=; echo "no chromium: skipping the browser rows"; fi; \
	$(EDGEKIT) verify $(ARTIFACTS) $$browser || rc=1; \
	$(EDGEKIT) report $(ARTIFACTS) || rc=1; \
	echo "parity report: $(ARTIFACTS)/report.md, $(ARTIFACTS)/report.html"; exit $$rc

serve-web: setup
	$(EDGEKIT) serve-web --artifacts $(ARTIFACTS)

.PHONY: serve
serve: setup  # every example's TFLite file on MLServer (v2 REST :8080, gRPC :8081, TF Serving REST /v1)
	$(EDGEKIT) serve $(ARTIFACTS)

bench: setup
	$(PY) benchmarks/bench_train.py

# Every TFLite and ONNX export verified inside an emulated Raspberry Pi 4 (arm64 Debian bookworm under
# qemu-user; root, cached in ~/.cache/edgekit/pi-rootfs); rows merged into $(ARTIFACTS)/report.*.
# Not part of `make test`. PI_MODEL=5 emulates a Pi 5 (cortex-a76).
pi-check: setup
	$(PY) scripts/pi_check.py --artifacts $(ARTIFACTS)

# ruff over every package, the import-layer contract, and a type check of the public API
lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(PY) scripts/lint_imports.py
	$(VENV)/bin/mypy

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
