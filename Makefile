# Celery Lab Kit. Two commands on a fresh machine: `make lab` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
KERNEL := celerylab
LAB_PORT ?= 8888
# JupyterLab refuses to run as root without this (containers, CI); harmless otherwise.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
PYTEST := $(PY) -m pytest
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg

.PHONY: lab install sysdeps test test-unit test-notebooks bench clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing the kit (pinned dependencies; takes about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --progress-bar on -q --upgrade pip
	$(PIP) install --progress-bar on -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (Celery Lab Kit)"
	$(VENV)/bin/jupyter labextension disable "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1 || true
	@touch $(STAMP)

install: $(STAMP)

## System packages some tests and benchmarks use (a real redis-server to compare against).
## Installed with apt-get when we can (CI runs as root); otherwise those tests say why they skip.
sysdeps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing redis-server (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	      || echo "warning: could not install redis-server; the real-Redis tests will skip"; \
	  else echo "note: redis-server not installed and not root; the real-Redis tests will skip"; fi; }

## Start JupyterLab on 127.0.0.1, opened at the first lesson (works headless: open the printed URL).
lab: install
	@echo "==> JupyterLab: open the URL printed below (Ctrl-C to stop)"
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser $(ALLOW_ROOT) \
		--ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb \
		--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate

## Everything CI runs: unit tests, then every notebook under nbval.
test: install sysdeps
	$(PYTEST) -q tests
	$(PYTEST) -q $(NBVAL) notebooks

test-unit: install
	$(PYTEST) -q tests

test-notebooks: install
	$(PYTEST) -q $(NBVAL) notebooks

## The live flow widget in a real JupyterLab + headless Chromium (apt/pip-installs chromium and playwright if missing).
.PHONY: test-browser bench-widgets
test-browser: install
	$(PYTEST) -q -m browser tests

## Event-to-widget latency of the live views at 200 tasks/s (p95 target 200 ms).
bench-widgets: install
	$(PY) bench/widget_latency.py
	$(PY) bench/widget_latency.py --in-kernel

bench: install sysdeps
	$(PY) bench/broker_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info

## Labs: generate labs/ from solutions/ (answers blanked; check cells keep their passing output).
## `make labs EXECUTE=1` re-runs the solution notebooks first.
.PHONY: labs grade
labs: install
	$(PY) -m celerylab.grading.labs $(if $(EXECUTE),--execute)

## Grade lab notebooks with nbval: a scorecard per lab, non-zero exit when an exercise fails.
## `make grade LABS="labs/00_first_tasks.ipynb"`; instructors: python -m celerylab grade --class DIR --csv scores.csv
grade: install
	$(PY) -m celerylab grade $(LABS)

## Interview prep: regenerate docs/cheatsheet.md from the quiz's question bank (tests fail while it is stale).
.PHONY: cheatsheet
cheatsheet: install
	$(PY) -m celerylab.quiz cheatsheet
