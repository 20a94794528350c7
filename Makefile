# The two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
SHIM   := $(VENV)/.torchvision-shim
EXTRAS ?= all,dev

.PHONY: demo test lint bench venv clean chromium

venv: $(SHIM)

# torch==2.13.0 first (a local CPU wheel here); everything else under the same pin,
# so no dependency can pull a CUDA build of torch.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

# Dev/test environment only (never the library): PyPI's torchvision is a CUDA build whose
# C++ ops cannot load next to the CPU torch, which breaks `import torchvision` (and so
# open_clip and parts of transformers). This installs an import hook that declares the
# missing operator schemas when, and only when, they are missing. See docs/encoders.md.
$(SHIM): $(STAMP) tools/dev_torchvision_shim.py tools/install_dev_shim.py
	$(PY) tools/install_dev_shim.py
	touch $(SHIM)

demo: $(SHIM)
	$(PY) -m priming demo
	@echo "Browse the demo's run:  $(VENV)/bin/priming browse demo-out/run"

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium); where it
# cannot be installed the script says why and those tests skip.
chromium:
	sh tools/install_chromium.sh

test: $(SHIM) chromium
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(SHIM)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
