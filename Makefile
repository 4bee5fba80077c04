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

## System packages: a real redis-server (tests and benchmarks compare against it) and, for the
## real-broker track, rabbitmq-server. Installed with apt-get when we can (CI runs as root);
## otherwise the tests that need them say why they skip.
define apt_install
	@command -v $(2) >/dev/null 2>&1 || test -x $(3) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing $(1) (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null) \
	      || echo "warning: could not install $(1); the tests that need it will skip"; \
	  else echo "note: $(1) not installed and not root; the tests that need it will skip"; fi; }
endef

## Prometheus, promtool and Alertmanager (lesson 07, tests/test_prometheus_*.py). The Debian
## packages would start system services listening on 0.0.0.0: a policy-rc.d refuses every
## service start during the install, and the services are disabled afterwards.
define apt_install_nostart
	@( for p in $(2); do command -v $$p >/dev/null 2>&1 || exit 1; done ) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing $(1) (apt-get, services not started)"; \
	    own=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '%s\n' '#!/bin/sh' 'exit 101' > /usr/sbin/policy-rc.d; \
	      chmod +x /usr/sbin/policy-rc.d; own=1; fi; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null) \
	      || echo "warning: could not install $(1); the tests that need it will skip"; \
	    if [ -n "$$own" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	    for s in $(1); do systemctl disable --now $$s >/dev/null 2>&1 || true; done; \
	  else echo "note: $(1) not installed and not root; the tests that need it will skip"; fi; }
endef

sysdeps:
	$(call apt_install,redis-server,redis-server,/usr/bin/redis-server)
	$(call apt_install_nostart,prometheus prometheus-alertmanager,prometheus promtool prometheus-alertmanager)

sysdeps-brokers: sysdeps
	$(call apt_install,rabbitmq-server,rabbitmq-server,/usr/lib/rabbitmq/bin/rabbitmq-server)

## Start JupyterLab on 127.0.0.1, opened at the first lesson (works headless: open the printed URL).
lab: install
	@echo "==> JupyterLab: open the URL printed below (Ctrl-C to stop)"
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser $(ALLOW_ROOT) \
		--ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb \
		--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate

## Unit tests, then every notebook under nbval (lesson 08b and the broker tests use a real
## redis-server and rabbitmq-server: installed with apt-get when missing). CI runs test-brokers too.
test: install sysdeps-brokers
	$(PYTEST) -q tests
	$(PYTEST) -q $(NBVAL) notebooks

## The real-broker track: every lesson and solution under nbval on a real redis-server, then on a
## real rabbitmq-server with results in a redis-server (each started on 127.0.0.1 for the run by
## celerylab.servers, then stopped).
.PHONY: sysdeps-brokers test-brokers
BROKERS_SANITIZE := $(VENV)/sanitize-brokers.cfg
NBVAL_BROKERS := --nbval --nbval-current-env --nbval-sanitize-with $(BROKERS_SANITIZE)
test-brokers: install sysdeps-brokers
	cat tests/sanitize.cfg tests/sanitize_brokers.cfg > $(BROKERS_SANITIZE)
	$(PY) -m celerylab.servers redis -- $(PYTEST) -q $(NBVAL_BROKERS) notebooks solutions
	$(PY) -m celerylab.servers rabbitmq --results redis -- $(PYTEST) -q $(NBVAL_BROKERS) notebooks solutions
	@# a class of 4 learners at once on one redis-server, then one rabbitmq-server (docs/classroom.md);
	@# lessons 01, 02, 04, 05, 06, 08 and lab 01's answer under nbval by two learners at once with the class's Redis users
	CELERYLAB_LOAD_TEST=1 $(PYTEST) -q tests/test_classroom_load.py tests/test_learner_keys.py

## The class load test in full: 10, 20 and 30 learners on each broker (about 15 minutes on 2 cores);
## results appended to docs/classroom-bench.json, plot in docs/classroom-bench.svg.
.PHONY: bench-classroom
bench-classroom: install sysdeps-brokers
	$(PY) bench/classroom.py --sizes 10,20,30 --json docs/classroom-bench.json --svg docs/classroom-bench.svg

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

## Each notebook alone under nbval against the 25 s budget (run it on a quiet machine).
.PHONY: bench-notebooks
bench-notebooks: install sysdeps-brokers
	$(PY) bench/notebook_times.py

clean:
	rm -rf $(VENV) build *.egg-info

## 简体中文 edition (issue 18): zh/notebooks, zh/solutions, zh/labs from the English notebooks and the
## catalogs in locale/zh_CN (python -m celerylab.translation), then the lessons and solutions run in
## Chinese (CELERYLAB_LANG=zh_CN: the kit's messages in their outputs; only those whose sources changed
## since they last ran), then the labs from the run solutions. It fails while an entry is untranslated
## or stale: after editing an English notebook, `make zh-update` marks what changed (fuzzy, the old
## translation kept), then translate those entries (`python -m celerylab.translation export|import`).
.PHONY: zh zh-update
zh: install sysdeps
	$(PY) -m celerylab.translation coverage --min 100
	$(PY) -m celerylab.translation build --strict --execute

zh-update: install
	$(PY) -m celerylab.translation update

## The Chinese lessons and solutions under nbval, as the English ones (CI runs it after make test).
.PHONY: test-zh
test-zh: zh sysdeps
	$(PYTEST) -q $(NBVAL) zh/notebooks zh/solutions

## The Chinese lessons and solutions on the real brokers, as test-brokers runs the English ones
## (not in CI, which runs the English on them: about 10 minutes more).
.PHONY: test-zh-brokers
test-zh-brokers: zh sysdeps-brokers
	cat tests/sanitize.cfg tests/sanitize_brokers.cfg > $(BROKERS_SANITIZE)
	$(PY) -m celerylab.servers redis -- $(PYTEST) -q $(NBVAL_BROKERS) zh/notebooks zh/solutions
	$(PY) -m celerylab.servers rabbitmq --results redis -- $(PYTEST) -q $(NBVAL_BROKERS) zh/notebooks zh/solutions

## Labs: generate labs/ from solutions/ (answers blanked, shipped unrun; the grader puts the master's check cells back).
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

## The course as a static HTML book in build/book: every lesson with its stored outputs, the labs
## (hints and solutions folded), the quiz and the cheat sheet; the same book in Chinese in
## build/book/zh, from the edition `make zh` wrote in zh/ (built unexecuted when zh/ is missing),
## every page linking to itself in the other language. Built offline (Sphinx + myst-nb,
## nothing executed); fails on a broken link. Open build/book/index.html, or serve it:
## `python3 -m http.server -b 127.0.0.1 -d build/book`.
.PHONY: book
book: install
	$(PY) book/build.py
