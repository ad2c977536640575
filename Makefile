# Two entry points: `make repro` (set up + run the pipeline) and `make test` (set up + tests).
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PYTHONHASHSEED := 0

.PHONY: setup repro test smoke lint bench compare prefect-server

setup:
	@scripts/setup_env.sh

repro: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=15 -m "not smoke" tests

# Every preset end to end on real-sized images with format-faithful random checkpoints, and the GPU benchmark at
# tiny sizes (tests marked smoke): CI runs it after `make test` (.ci/run).
smoke: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=20 -m smoke tests

lint: setup
	$(BIN)/ruff check .

# Every registered CAM method × backbone as a DVC experiment (run-cache reused); table in reports/compare/.
compare: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pipeline.compare

bench: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m benchmarks.run_all

prefect-server: setup
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200
