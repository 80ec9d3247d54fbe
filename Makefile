# gan-job: every command a user needs. `make help` lists them.
PY      ?= .venv/bin/python
CONFIG  ?= tune_configs/fmnist.yaml
STAMP   := .venv/.installed-stamp

.PHONY: help install test test-fast lint format tune tune-quick train-best tensorboard bench docs image image-lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q "uv==0.13.9"
	# bytecode compiled once here: every test subprocess and Ray worker imports torch and Ray,
	# and with PYTHONDONTWRITEBYTECODE set each would compile them again (~4 s a process)
	.venv/bin/uv pip install -q --compile-bytecode --python $(PY) -c constraints.txt -e ".[dev,serve]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install gan with the pinned versions of constraints.txt

test: $(STAMP)  ## every test (real Fashion-MNIST slices, CPU, two-node Ray cluster; 5-8 min on 2 cores)
	$(PY) -m pytest -q -n 2 --dist worksteal

test-fast: $(STAMP)  ## the tests without the slow ones (Ray chaos, long training: 20 s or more each)
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow"

lint: $(STAMP)  ## ruff lint and format check
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

tune: $(STAMP)  ## run the Ray Tune job on CONFIG (local Ray, or the cluster at RAY_ADDRESS)
	.venv/bin/gan tune $(CONFIG)

tune-quick: $(STAMP)  ## a real small tune that finishes in minutes on a laptop CPU
	.venv/bin/gan tune tune_configs/quick.yaml

train-best: $(STAMP)  ## retrain the best config of the latest experiment for 1000 epochs
	.venv/bin/gan train --best

tensorboard: $(STAMP)  ## TensorBoard over every trial and run
	.venv/bin/tensorboard --logdir results/ --bind_all

bench: $(STAMP)  ## benchmarks: ratios measured in one run, saved under bench/results/
	$(PY) -m bench

docs: $(STAMP)  ## regenerate docs/config.md and docs/benchmarks.md (+ plots) from the code and the committed JSON
	$(PY) -m gan.config_docs docs/config.md
	$(PY) -m bench report

image:  ## build the gan-job image (the gan CLI; also a Ray head/worker node image)
	docker build -t gan-job .

image-lint: $(STAMP)  ## lint the Dockerfile with hadolint; any finding fails
	.venv/bin/hadolint --failure-threshold style Dockerfile

clean:  ## remove run outputs (keeps data/ and .venv/)
	rm -rf runs/ results/
