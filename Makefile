# `make test` and `make demo` work on a fresh clone: they create (or reuse) .venv, install torch only
# when none is importable (the pinned CPU wheel; an unpinned torch would pull GBs of CUDA packages),
# install the package with its test extra, then run.
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup test demo bench clean

$(PY):
	python3 -m venv --system-site-packages $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

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
	rm -rf $(VENV) build dist *.egg-info
