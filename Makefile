# Banyan: `make run` starts the whole stack, `make test` runs ruff, mypy and pytest with coverage.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COV_MIN ?= 90

.PHONY: run test lint typecheck pytest browser-deps stack-deps web console bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/banyan up --flags flags.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy banyan bench

# What the browser tests need (tests/browser): Debian's Chromium when it is absent and we are root,
# and playwright-core from tests/browser/package-lock.json. Never a browser download. A failure
# here is reported, not fatal: the browser tests then skip loudly, or fail in CI (CI=true).
BROWSER_TESTS := tests/browser
CHROMIUM ?= /usr/bin/chromium

browser-deps:
	@if [ ! -x "$(CHROMIUM)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for the browser tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
		|| echo "WARNING: could not install chromium; browser tests will skip (fail in CI)"; \
	fi
	@if [ ! -d $(BROWSER_TESTS)/node_modules/playwright-core ]; then \
		if command -v npm >/dev/null 2>&1; then \
			(cd $(BROWSER_TESTS) && npm ci --no-audit --no-fund --loglevel=error) \
			|| echo "WARNING: npm ci in $(BROWSER_TESTS) failed; browser tests will skip (fail in CI)"; \
		else echo "WARNING: npm not found; browser tests will skip (fail in CI)"; fi; \
	fi

# What the whole-stack test needs (tests/stack): Debian's HAProxy when it is absent and we are root.
# A failure here is reported, not fatal: the test then skips loudly, or fails in CI (CI=true).
stack-deps:
	@if ! command -v haproxy >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing haproxy (apt-get) for the whole-stack test"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q haproxy >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && apt-get install -y -q haproxy >/dev/null; } \
		|| echo "WARNING: could not install haproxy; the whole-stack test will skip (fail in CI)"; \
	fi

# Rebuild the committed web app (banyan/webapp/dist) after changing web/.
web:
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build

# Rebuild the committed console (banyan/console/dist) after changing console/.
console:
	cd console && npm ci --no-audit --no-fund --loglevel=error && npm run build

pytest: $(STAMP) browser-deps stack-deps
	rm -f .coverage .coverage.*
	COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml $(BIN)/pytest --cov --cov-report=term --cov-fail-under=$(COV_MIN) $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/proxy_overhead.py

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
