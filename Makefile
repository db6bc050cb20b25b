# Two commands do all the set-up: `make run` (the tutorial's run) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
SYSTEM_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ARGS ?=
# Where torch comes from. Empty: PyPI, whose Linux wheels carry CUDA (about 4 GB more to download). On a
# machine without an NVIDIA GPU the CPU-only build is enough: make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: run test quick lint docs data slurm browser postgresql clean

# The environment in two steps. `make run` installs what a run needs: the package and its plotting extra.
# `make test` (and lint, quick, docs) adds the rest: the dev, docs, tracking, tuning, PostgreSQL and ONNX
# extras, and the Jupyter kernel "python3" (this environment's python, by its full path: the notebook tests
# run in it).
$(RUN_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "Installing the environment in $(VENV): torch is the long part (minutes; pip shows each download)"
	@if [ -z "$(TORCH_INDEX)" ] && ! command -v nvidia-smi >/dev/null; then \
	  echo "No NVIDIA GPU here: the CPU-only torch is a fraction of the download:" \
	       "make run TORCH_INDEX=https://download.pytorch.org/whl/cpu"; \
	fi
	@if [ -n "$(TORCH_INDEX)" ]; then $(PY) -m pip install --progress-bar on --index-url $(TORCH_INDEX) torch torchvision; fi
	$(PY) -m pip install --progress-bar on -e '.[plot]'
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	@echo "Installing the test, docs, tracking, tuning and export extras in $(VENV)"
	$(PY) -m pip install --progress-bar on -e '.[dev,docs,plot,tensorboard,tune,postgresql,mlflow,wandb,onnx]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Make sure the data can be found: already under data/, a system copy, or (as root with apt) Debian's
# dataset-fashion-mnist package. Otherwise torchvision downloads it at the first run.
data: $(RUN_STAMP)
	@if [ -z "$$FMNIST_DATA_DIR" ] && [ ! -e $(SYSTEM_DATA) ] && [ ! -d data/FashionMNIST/raw ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's dataset-fashion-mnist"; \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	    || echo "Could not install dataset-fashion-mnist: torchvision will try to download the data"; \
	fi

# The SLURM tests need Debian's slurm-wlm and munge (tests/slurm/cluster.sh starts a one-node cluster and
# stops it). Installed as root with apt when missing; otherwise those tests are skipped, with the reason.
slurm:
	@if ! command -v slurmctld >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's slurm-wlm and munge for the SLURM tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null) \
	    || echo "Could not install slurm-wlm and munge: the SLURM tests will be skipped"; \
	fi

# The browser tests (tests/test_browser.py: the notebook in JupyterLab, the docs site) drive Debian's
# Chromium headless through its chromedriver. Installed as root with apt when missing; otherwise those tests
# are skipped, with the reason.
browser:
	@if ! command -v chromedriver >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's chromium and chromium-driver for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "Could not install chromium and chromium-driver: the browser tests will be skipped"; \
	fi

# The PostgreSQL tests (tests/test_postgres.py: a study on a real server) need Debian's postgresql; the tests
# start a server of their own (a new cluster in a temporary directory, on 127.0.0.1 only) and stop it.
# Installed as root with apt when missing; otherwise those tests are skipped, with the reason.
postgresql:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's postgresql for the PostgreSQL tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	    || echo "Could not install postgresql: the PostgreSQL tests will be skipped"; \
	fi

run: data
	$(PY) examples/run.py $(ARGS)

test: $(STAMP) data slurm browser postgresql lint
	$(PY) -m pytest $(ARGS)

# The quick tier: what needs no subprocess, kernel, cluster or real data, nor trains several runs (under two
# minutes on 2 cores).
quick: $(STAMP)
	$(PY) -m pytest -m "not slow" -q $(ARGS)

# The lint and type gate (make test runs it first): ruff's rules of pyproject.toml and its formatting, and
# mypy with every function typed (pyproject.toml's [tool.mypy]), zero findings.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site, into site/ (strict: a broken link, a missing reference or a warning fails it).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site *.egg-info
