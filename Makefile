# `make test` and `make demo` work on a fresh clone: they create (or reuse) .venv, install torch only
# when none is importable (the pinned CPU wheel; an unpinned torch would pull GBs of CUDA packages),
# install the package with its test and server extras and Playwright, install Debian's chromium for the
# browser tests when it is missing, build the web page (web/ -> server/static/) and the node catalog
# (server/catalog.json, which a server's first start answers from), then run.
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

# the node editor: `npm ci` when the lock file changes, `npm run build` when a source changes
WEB_DEPS := web/node_modules/.ci-stamp
WEB_SRC  := web/package.json web/index.html web/vite.config.js $(shell find web/src examples/workflows -type f 2>/dev/null)
PAGE     := server/static/index.html

.PHONY: setup browser redis catalog test demo bench clean

$(PY):
	python3 -m venv --system-site-packages $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,server,queue]" playwright
	touch $(STAMP)

# Debian's chromium drives the browser tests (Playwright's own browser download is not reachable); where it
# cannot be installed (no apt, no root and no sudo) tests/web skip and say why
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "apt-get not found: chromium not installed, the browser tests (tests/web) will skip"; \
	  else \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	    { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	      || echo "could not install chromium: the browser tests (tests/web) will skip"; \
	  fi; }

# Debian's redis-server backs the tests of the Redis queue (tests/server/test_redis.py starts its own on a free
# port); where it cannot be installed those tests skip and say why
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "apt-get not found: redis-server not installed, the Redis queue tests (tests/server/test_redis.py) will skip"; \
	  else \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	    { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } \
	      || echo "could not install redis-server: the Redis queue tests (tests/server/test_redis.py) will skip"; \
	  fi; }

$(WEB_DEPS): web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd web && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.ci-stamp; \
	else echo "npm not found: the web page is not built, the browser tests (tests/web) will skip"; fi

$(PAGE): $(WEB_DEPS) $(WEB_SRC)
	@if [ -f $(WEB_DEPS) ]; then cd web && npm run build --silent; fi

# the node types' catalog for GET /api/nodes, keyed by the sources' contents (a no-op when it is current)
catalog: $(STAMP)
	@$(PY) -c "from diffblocks.server.engine import build_catalog; print(build_catalog())"

setup: $(STAMP) browser redis $(PAGE) catalog

test: setup
	$(PY) -m pytest

# the SD 1.5 text-to-image preset on the embedded tiny digits model: a 2x5 grid of the ten digits
DIGITS := zero one two three four five six seven eight nine
demo: setup
	$(VENV)/bin/diffblocks run $(foreach d,$(DIGITS),--prompt "a handwritten digit $(d)") \
		--rows 2 --upscale 4 --steps 25 --seed 0 --out demo.png

bench: setup
	$(PY) benchmarks/bench_framework.py

clean:
	rm -rf $(VENV) build dist *.egg-info web/node_modules server/static server/catalog.json
