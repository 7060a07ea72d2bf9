# Two commands on a fresh machine with Python 3.11+:  make demo  |  make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Keep Prefect's state inside the project and everything offline and quiet.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install browser postgres demo demo-clean prefect-server lint test test-fast label-studio screenshots bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

# The demo keeps out/demo/ (answers, tasks, deliveries): run it again and every answer comes from the
# response store, nothing is called. demo-clean deletes out/demo/ and runs the demo afresh.
demo: install
	$(BIN)/python examples/run_demo.py

demo-clean: install
	$(BIN)/python examples/run_demo.py --fresh

# Prefect's server for regular use (UI and API on http://127.0.0.1:4200; PREFECT_SERVER_API_PORT=N for
# another port), offline: no telemetry heartbeat from the server (PREFECT_SERVER_ANALYTICS_ENABLED), no
# analytics in its UI (which follows that setting), no client telemetry (DO_NOT_TRACK), no promotional
# content in the UI. Its database is in PREFECT_HOME (./.prefect).
# Then, where rlhf runs: export PREFECT_API_URL=http://127.0.0.1:4200/api
prefect-server: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false \
	  $(BIN)/prefect server start --host 127.0.0.1

# Lint (ruff), format check (ruff format) and types (mypy: strict for common, prompts, providers,
# task_builder, platforms; checked but Any-tolerant for flows and the simulator). The layer contract is
# tests/test_layers.py, part of the suite.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common prompts providers task_builder platforms flows simulator

test: install browser postgres
	$(BIN)/python -m pytest -q

# Debian's chromium for the browser tests of the labeling form (Playwright drives it; nothing is
# downloaded by Playwright). Installed with apt-get when missing and we are root (CI); otherwise a note,
# and the browser tests skip (in CI, with CI set, they fail instead).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: sudo apt-get install chromium to run the browser tests (they skip without it)"; fi; }

# PostgreSQL's server binaries for the tests of the PostgreSQL response store (tests/pg_server.py starts
# a throwaway server in a temporary directory on a loopback port).
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's postgresql for the PostgreSQL store tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "note: sudo apt-get install postgresql to run the PostgreSQL store tests (they skip without it)"; fi; }

# A local Label Studio for a trial on http://127.0.0.1:8080 (installed once into its own venv under
# ~/.cache/rlhf-orchestrator; user, password and API token are printed). Ctrl-C stops it.
label-studio: install
	$(BIN)/python -m platforms.label_studio.local_server $(LS_ARGS)

# Refresh the labeling-form screenshots in docs/screenshots from a real Label Studio and chromium.
screenshots: install browser
	RLHF_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q tests/test_annotator_browser.py

# Everything except the tests marked slow (those that start Prefect, a flow run or a subprocess).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Throughput vs the raw floor and peers, memory, resume cost (~45 min; writes bench/RESULTS.md).
# BENCH_ARGS=--quick for a ~10 min run, BENCH_ARGS="--only memory" for one section.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf out .prefect .pytest_cache
