# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, so that resolving the package's `torch` requirement keeps it
# and never pulls another build. Whether that build is the CPU-only one depends on where
# pip looks: the default index serves CUDA builds on Linux, so the CPU-only promise holds
# only where pip is configured with a CPU wheel index or a local CPU wheel. Otherwise
# pass one; TORCH_SPEC is split into pip arguments by the shell (quote a specifier with
# < or > inside it):
#   make venv TORCH_SPEC="torch==2.13.0 --index-url <CPU wheel index>"
#   make venv TORCH_SPEC=/path/to/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test docs lint bench-quick bench-nh clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev,dask,docs]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/sktlag run --out sktlag-demo --force

test: venv
	$(BIN)/python -m pytest -q

# The site, from scratch: pages, API reference and the examples run anew (about 2 min).
# Open docs/_build/html/index.html in a browser.
docs: venv
	rm -rf docs/_build docs/generated docs/auto_examples
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "open docs/_build/html/index.html"

lint: venv
	$(BIN)/ruff check sktlag tests examples benchmarks docs

bench-quick: venv
	$(BIN)/python benchmarks/run_all.py --quick

# Side by side with NeuralHydrology; not part of `test`. The extra goes in on top of
# the torch already in the venv (CPU build here; a CUDA build stays if installed first).
# Full run on a GPU: make bench-nh BENCH_NH_ARGS="--device cuda:0 --parallel 8"
BENCH_NH_ARGS ?=
bench-nh: venv
	$(BIN)/python -m pip install --quiet -e ".[neuralhydrology]"
	$(BIN)/python benchmarks/vs_neuralhydrology.py $(BENCH_NH_ARGS)

clean:
	rm -rf $(VENV) sktlag-demo build *.egg-info docs/_build docs/generated docs/auto_examples
