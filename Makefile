# Two commands for a fresh machine: `make run` (the default campaign) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true
export TORCHANI_NO_WARN_EXTENSIONS := 1
export OMP_NUM_THREADS ?= 1

.PHONY: install lock run resume test lint bench benchmark notebook viz mlflow-ui clean-campaign
SYSTEM ?= sn2_cl_ch3cl
PARALLEL ?= 2

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so nothing below can pull a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	# every other package at the version the README's numbers were measured with
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,notebook]"
	touch $@

install: $(BIN)/.installed

## After a deliberate upgrade of .venv: record its versions in constraints.txt (torch stays in pyproject.toml).
lock: install
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

## The default campaign (SN2) on embedded defaults; resumes an interrupted one.
run: install
	$(BIN)/kedro run --only-missing-outputs

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

## Benchmarks (write benchmarks/results/*.json); biased_md.py and tuning_sn2.py need a campaign.
bench: install
	$(BIN)/python benchmarks/training.py --qm
	$(BIN)/python benchmarks/md_cost.py
	$(BIN)/python benchmarks/labeling.py

## Query methods compared on one system: data/08_reporting/benchmark_$(SYSTEM).json + plots.
## Optional: SEEDS=3 (replicate seeds), LEVEL=xtb (benchmark_$(SYSTEM)_xtb.json), ITERATIONS, BATCH_SIZE.
benchmark: install
	$(BIN)/reactive-al benchmark --system $(SYSTEM) --parallel $(PARALLEL) \
	  $(if $(SEEDS),--seeds $(SEEDS)) $(if $(LEVEL),--level $(LEVEL)) \
	  $(if $(ITERATIONS),--iterations $(ITERATIONS)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE))

notebook: install
	$(BIN)/kedro jupyter lab

## The pipelines in the browser (kedro-viz, http://127.0.0.1:4141); AL iterations collapse.
viz: install
	$(BIN)/kedro viz run

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

## Remove what a campaign computed (the label cache is kept: labels are never recomputed).
clean-campaign:
	find data/0[2-8]_* -mindepth 1 -maxdepth 1 ! -name 'label_cache.db*' ! -name .gitkeep \
		-exec rm -rf {} +
	rm -rf mlflow.db mlartifacts
