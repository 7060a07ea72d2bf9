# Two commands on a fresh machine with Python 3.11+:  make demo  |  make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Keep Prefect's state inside the project and everything offline and quiet.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/python examples/run_demo.py

test: install
	$(BIN)/python -m pytest -q

# Everything except the tests marked slow (those that start Prefect, a flow run or a subprocess).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Throughput vs the raw floor and peers, memory, resume cost (~45 min; writes bench/RESULTS.md).
# BENCH_ARGS=--quick for a ~10 min run, BENCH_ARGS="--only memory" for one section.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf out .prefect .pytest_cache
