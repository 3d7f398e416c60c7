# The README's commands. Every target creates .venv from requirements.lock first.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup system-deps demo test lint bench ui stack stack-down clean

# Debian tools the tests and the stack drive: Chromium (UI screenshots), Prometheus and promtool
# (alert rules), Alertmanager (the stack's alert routing), wrk (bench).
SYSTEM_TOOLS := /usr/bin/chromium /usr/bin/prometheus /usr/bin/promtool \
	/usr/bin/prometheus-alertmanager /usr/bin/amtool /usr/bin/wrk

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	@missing=""; for f in $(SYSTEM_TOOLS); do test -x $$f || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus prometheus-alertmanager wrk >/dev/null; \
	fi

demo: $(STAMP)
	$(BIN)/driftloop demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest tests --durations=40

# Every benchmark prints a table against a peer measured in the same run (slow: 1-2 hours,
# most of it Evidently in bench/detection.py; pass --evidently-trials 50 by hand for less).
bench: $(STAMP) system-deps
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/replicas.py
	$(BIN)/python bench/detection.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/partitions.py

stack: $(STAMP) system-deps
	$(BIN)/driftloop stack up

stack-down:
	$(BIN)/driftloop stack down

ui: $(STAMP)
	$(BIN)/driftloop ui

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) mlflow.db driftloop.db .pytest_cache .driftloop demo-report
