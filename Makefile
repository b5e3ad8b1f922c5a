# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: venv data test demo complexity experiments report bench device-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

# The offline dataset: Debian's dataset-fashion-mnist (IDX files in $(FMNIST)), or your own
# copy of the four IDX files in $$DCNN_DD_DATA.
data:
	@if [ -n "$$DCNN_DD_DATA" ] || [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: found ($${DCNN_DD_DATA:-$(FMNIST)})"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)); \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  (sudo apt-get install -y -q dataset-fashion-mnist || (sudo apt-get update -q && sudo apt-get install -y -q dataset-fashion-mnist)); \
	else \
	  echo "Fashion-MNIST not found and cannot be installed automatically. Either:"; \
	  echo "  sudo apt-get install dataset-fashion-mnist      # Debian/Ubuntu: IDX files in $(FMNIST)"; \
	  echo "or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,"; \
	  echo "t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist into a directory DIR and"; \
	  echo "  export DCNN_DD_DATA=DIR"; \
	  exit 1; \
	fi

# Two pytest-xdist workers (the suite is bound by XLA compilation, one core each); a test file
# stays on one worker, so its module fixtures run once.  TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: $(STAMP) data
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: $(STAMP) data
	$(PY) -m experiments.quickstart

complexity: $(STAMP)
	$(PY) -m experiments.complexity

# Every experiment offline (Fashion-MNIST stand-ins, 2 CPU cores, ~15 min): Section 3 of Gu et al.,
# CNN-DNN, layer-parallel MGRIT; then results/REPORT.md.
# On GPUs with the TFDS data: PRESET=paper (or gpu-small) make experiments
PRESET ?= cpu-smoke
experiments: $(STAMP) data
	$(PY) -m experiments.cifar --preset $(PRESET)
	$(PY) -m experiments.partitions --preset $(PRESET)
	$(PY) -m experiments.visualize --preset $(PRESET)
	$(PY) -m experiments.cnn_dnn --preset $(PRESET)
	$(PY) -m experiments.layer_parallel --preset $(PRESET)
	$(PY) -m experiments.report

# The speed measurements (each prints its ratios and writes results/bench/<name>.json).
bench: $(STAMP) data
	$(PY) -m benchmarks.compose
	$(PY) -m benchmarks.subnet_speedup
	$(PY) -m benchmarks.input_pipeline
	$(PY) -m benchmarks.mgrit

# Every accelerator claim in one run of <= 8 min (docs/benchmarks.md, "GPU device check"); needs no install, so it
# uses the venv's python where there is one, else python3.  DC_DATA: the Fashion-MNIST IDX files (parts 5 and 6).
DC_PY   ?= $(if $(wildcard $(PY)),$(PY),python3)
DC_OUT  ?= results/device_check
DC_DATA ?= $(firstword $(wildcard data/fashion-mnist $(FMNIST)))
device-check:
	PYTHONPATH=. $(DC_PY) -m benchmarks.device_check --out $(DC_OUT) $(if $(DC_DATA),--data $(DC_DATA)) $(DC_ARGS)

report: $(STAMP)
	$(PY) -m experiments.report

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
