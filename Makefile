# DIN Lab: two commands from a bare clone (README.md):
#   make demo   set up, then run a DIN task end to end with the role agents (din-lab run) and write results/run
#   make test   set up, then lint (ruff, import-linter, Slither) and run the whole test suite and the notebooks
# Both are idempotent: set-up steps rerun only when their inputs change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
NODE_MODULES := contracts/node_modules
VECTOR_NODE_MODULES := tests/vectors/unixfs/node_modules
KUBO_CLIENT_NODE_MODULES := tests/clients/kubo-rpc-client/node_modules
# Slither has its own venv: slither-analyzer 0.11.6 needs web3<8, the lab pins web3 8 (requirements-slither.txt)
SLITHER_VENV := .venv-slither
PYTEST_ARGS ?=
# the suite in two pytest-xdist workers (one per core; each deploys its own networks and starts its own
# anvil), torch on one thread each so that the two never stall each other (NOTES.md); the measured time is
# in README.md. Idle workers steal queued tests (--dist worksteal: the slow tests vary from 10 s to 2.5 min,
# measured on one commit: 1,853 s with plain load balancing, 1,659 s with work stealing). PYTEST_JOBS=0
# runs it in one process.
PYTEST_JOBS ?= 2
# every notebook, top to bottom, in a kernel on this venv's Python; a separate pytest run so that
# PYTEST_ARGS (paths, -k) never split or filter a notebook's cells. Two notebooks at a time, each whole
# in one worker (--dist loadfile keeps a notebook's cells in order in one kernel). No notebook: exit 5,
# a failure.
NBVAL := OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_JOBS) --dist loadfile --nbval-lax --nbval-current-env \
	notebooks widgets
DASHBOARD_PORT ?= 8866
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: demo test lint slither notebooks dashboards setup contracts check-contracts vectors check-vectors bench fuzz clean

setup: $(VENV)/.installed $(NODE_MODULES)/.installed $(VECTOR_NODE_MODULES)/.installed \
	$(KUBO_CLIENT_NODE_MODULES)/.installed

# torch first, on its own: any other order pulls several GB of CUDA wheels (NOTES.md)
$(VENV)/.installed: constraints.txt requirements-lab.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -r requirements-lab.txt -c constraints.txt
	$(PIP) install -q --no-deps -e .
	touch $@

# the optional Ray runtime (pip install 'din-lab[ray]'): the tests run a task over Ray actors
$(VENV)/.ray-installed: $(VENV)/.installed constraints.txt
	$(PIP) install -q -c constraints.txt "ray==2.60.0"
	touch $@

$(NODE_MODULES)/.installed: contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# the npm reference UnixFS importer that produces tests/vectors/unixfs/vectors.json
$(VECTOR_NODE_MODULES)/.installed: tests/vectors/unixfs/package.json tests/vectors/unixfs/package-lock.json
	cd tests/vectors/unixfs && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# the npm kubo-rpc-client that tests/test_kubo_rpc_client.py drives against `din-lab ipfs daemon`
$(KUBO_CLIENT_NODE_MODULES)/.installed: tests/clients/kubo-rpc-client/package.json \
		tests/clients/kubo-rpc-client/package-lock.json
	cd tests/clients/kubo-rpc-client && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# no solc-select and no download: contracts/solc-slither.js answers as `solc` with the pinned solc-js
$(SLITHER_VENV)/.installed: requirements-slither.txt
	test -x $(SLITHER_VENV)/bin/python || $(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/python -m pip install -q -r requirements-slither.txt
	touch $@

demo: setup
	$(VENV)/bin/din-lab run --out results/run

lint: setup $(SLITHER_VENV)/.installed
	$(VENV)/bin/ruff check din_lab tests benchmarks
	$(VENV)/bin/lint-imports
	$(SLITHER_VENV)/bin/python contracts/slither_check.py

# Slither over contracts/src (~10 s); a High or Medium finding not in contracts/slither-triage.json fails
slither: $(SLITHER_VENV)/.installed $(NODE_MODULES)/.installed
	$(SLITHER_VENV)/bin/python contracts/slither_check.py

test: lint $(VENV)/.ray-installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_JOBS) --dist worksteal --durations=25 $(PYTEST_ARGS)
	$(NBVAL)

notebooks: setup
	$(NBVAL)

# the stateful contract test's slow profile: 10,000 random sequences over two tasks on anvil, in two
# processes (about an hour on 2 cores; README); prints a table, writes results/fuzz.json
fuzz: setup
	$(PY) benchmarks/fuzz.py --examples 10000 --jobs 2

# the Voila apps in widgets/ (round explorer, rewards, experiment) on http://127.0.0.1:$(DASHBOARD_PORT)/
dashboards: setup
	$(VENV)/bin/voila widgets --no-browser --Voila.ip=127.0.0.1 --port=$(DASHBOARD_PORT)

contracts: $(NODE_MODULES)/.installed
	cd contracts && node build.js

check-contracts: $(NODE_MODULES)/.installed
	cd contracts && node build.js --check

vectors: $(VECTOR_NODE_MODULES)/.installed
	cd tests/vectors/unixfs && node generate.mjs

check-vectors: $(VECTOR_NODE_MODULES)/.installed
	cd tests/vectors/unixfs && node generate.mjs --check

bench: setup
	$(PY) benchmarks/gas.py
	$(PY) benchmarks/ipfs.py
	$(PY) benchmarks/round.py
	$(PY) benchmarks/secagg.py
	$(PY) benchmarks/he.py

clean:
	rm -rf $(VENV) $(SLITHER_VENV) $(NODE_MODULES) $(VECTOR_NODE_MODULES) $(KUBO_CLIENT_NODE_MODULES) results test-artifacts .pytest_cache .hypothesis
