# rewirejax: `make demo` runs the main job on a small default, `make test` runs the tests.
# Both install first (into .venv, from the exact pins in constraints.txt) when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-permutation reproduce-brax report test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

# SAC on one Brax HalfCheetah task for a few minutes on 2 CPU cores (preset experiments/configs/demo.py).
demo: install
	$(VENV)/bin/rewirejax train --preset demo --out results/demo

# Rewiring alone recovers a shuffled MLP (about 10 s).
demo-permutation: install
	$(PY) experiments/permutation_recovery.py

# The paper's Brax table: scenarios x methods x seeds (seeds vmapped in one job per pair).
# Empty SCENARIOS / METHODS mean all; BUDGET is the fraction of the paper's 1 M steps a task;
# PRESET=paper|reference picks the rewiring settings (SPEC defaults or the reference code's);
# SAC=paper|fast the SAC settings (the scenario's, or ones that learn within a small budget).
# Example for 2 CPU cores (about 2 h): make reproduce-brax SCENARIOS=halfcheetah/forgetting
#   METHODS="sac_n ft_1" SEEDS=3 BUDGET=0.015 BACKEND=spring NUM_ENVS=16 EVAL_ENVS=16 SAC=fast RESULTS=results-fast
SCENARIOS ?=
METHODS ?=
SEEDS ?= 10
BUDGET ?= 1.0
BACKEND ?= mjx
RESULTS ?= results
NUM_ENVS ?=
EVAL_ENVS ?=
PRESET ?= paper
SAC ?= paper
reproduce-brax: install
	$(PY) experiments/reproduce_brax.py $(if $(strip $(SCENARIOS)),--scenarios $(SCENARIOS)) \
	  $(if $(strip $(METHODS)),--methods $(METHODS)) --seeds $(SEEDS) --budget $(BUDGET) \
	  --backend $(BACKEND) --out $(RESULTS) $(if $(NUM_ENVS),--num-envs $(NUM_ENVS)) \
	  $(if $(EVAL_ENVS),--eval-envs $(EVAL_ENVS)) --preset $(PRESET) --sac $(SAC)

# Rebuild tables and plots from the result files alone.
report: install
	$(VENV)/bin/rewirejax report $(RESULTS)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check rewirejax experiments tests
	$(VENV)/bin/ruff format --check rewirejax experiments tests

bench: install
	$(PY) experiments/bench.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
