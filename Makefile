# rewirejax: `make demo` runs the main job on a small default, `make test` runs the tests.
# Both install first (into .venv, from the exact pins in constraints.txt) when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# ACCEL=cuda12|cuda13|tpu adds jax's accelerator plugins (pyproject.toml extras, pinned in
# constraints.txt): `make install ACCEL=cuda12`. Empty: the CPU install.
ACCEL ?=
ifneq ($(filter-out cuda12 cuda13 tpu,$(ACCEL)),)
$(error ACCEL must be cuda12, cuda13 or tpu (or empty for CPU), got '$(ACCEL)')
endif
STAMP := $(VENV)/.installed$(if $(ACCEL),-$(ACCEL))

.PHONY: install check-accel demo demo-permutation reproduce-brax reproduce-cw first-stage reproduce-cpu report test lint bench bench-device clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,cw$(if $(ACCEL),$(comma)$(ACCEL))]"
	touch $(STAMP)

comma := ,

# The accelerator extras resolve against the pins (a dry run: nothing is installed).
check-accel: install
	@for accel in cuda12 cuda13 tpu; do \
	  $(PY) -m pip install --dry-run --quiet -c constraints.txt -e ".[$$accel]" || exit 1; \
	  echo "$$accel: resolves"; \
	done

# SAC on one Brax HalfCheetah task for a few minutes on 2 CPU cores (preset experiments/configs/demo.py).
demo: install
	$(VENV)/bin/rewirejax train --preset demo --out results/demo

# Rewiring alone recovers a shuffled MLP (about 10 s).
demo-permutation: install
	$(PY) experiments/permutation_recovery.py

# The paper's Brax table: scenarios x methods x seeds (seeds vmapped in one job per pair).
# Empty SCENARIOS / METHODS mean all. PROTOCOL=paper|cpu gives the defaults of the rest
# (experiments/configs/brax.py PROTOCOLS; cpu: 150 k steps a task on spring, 16 envs, 3 x 64
# networks, about 30 min a method on 2 CPU cores); any of them may be set on its own:
# BUDGET is the fraction of the paper's 1 M steps a task; PRESET=paper|reference picks the
# rewiring settings (SPEC defaults or the reference code's); SAC=paper|fast|cpu the SAC settings.
# Example: make reproduce-brax PROTOCOL=cpu SCENARIOS=halfcheetah/forgetting METHODS="sac_n ft_1"
PROTOCOL ?= paper
SCENARIOS ?=
METHODS ?=
SEEDS ?=
BUDGET ?=
BACKEND ?=
RESULTS ?= results
NUM_ENVS ?=
EVAL_ENVS ?=
PRESET ?=
SAC ?=
REPRODUCE_FLAGS = --protocol $(PROTOCOL) \
	  $(if $(strip $(SCENARIOS)),--scenarios $(SCENARIOS)) \
	  $(if $(strip $(METHODS)),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS)) \
	  $(if $(BUDGET),--budget $(BUDGET)) $(if $(BACKEND),--backend $(BACKEND)) --out $(RESULTS) \
	  $(if $(NUM_ENVS),--num-envs $(NUM_ENVS)) $(if $(EVAL_ENVS),--eval-envs $(EVAL_ENVS)) \
	  $(if $(PRESET),--preset $(PRESET)) $(if $(SAC),--sac $(SAC))
reproduce-brax: install
	$(PY) experiments/reproduce_brax.py $(REPRODUCE_FLAGS)

# The paper's Continual World table (Table 2): the eight CW3 triplets and CW10 (empty
# SCENARIOS: all nine), with the same flags, pipeline and report as reproduce-brax; scored by
# success rate (docs/continual-world.md). At PROTOCOL=paper a task is 1 M steps of 128 envs:
# an accelerator's job. On 2 CPU cores only a check that it runs, e.g.
# make reproduce-cw SCENARIOS=cw/cw3-t1 METHODS="sac_n ft_1" SEEDS=1 BUDGET=0.001 EVAL_ENVS=4 NUM_ENVS=4
reproduce-cw: install
	$(PY) experiments/reproduce_cw.py $(REPRODUCE_FLAGS)

# The cpu protocol end to end (docs/cpu-protocol.md): the first stage (Fig. 5a), then every
# method and the Table 3 ladder on halfcheetah/forgetting, then the second scenario. Results
# (small JSON, tables, plots) go to experiments/results/cpu and are committed; checkpoints stay
# beside them, untracked, so a killed run resumes with the same command.
CPU_RESULTS := experiments/results/cpu
CPU_FORGETTING := sac_n ft_1 ft_l2 ft_n ewc packnet pnn csp rewire rewire_base rewire_cache \
  rewire_cache_modes rewire_cache_align
CPU_SECOND := sac_n ft_1 ft_l2 ewc packnet csp rewire
first-stage: install
	$(PY) experiments/first_stage.py --protocol cpu --out experiments/results

reproduce-cpu: first-stage
	$(PY) experiments/reproduce_brax.py --protocol cpu --out $(CPU_RESULTS) \
	  --scenarios halfcheetah/forgetting --methods $(CPU_FORGETTING)
	$(PY) experiments/reproduce_brax.py --protocol cpu --out $(CPU_RESULTS) \
	  --scenarios halfcheetah/robustness --methods $(CPU_SECOND)

# Rebuild tables and plots from the result files alone: by default the committed cpu results
# and the README's tables made from them; RESULTS=dir for a folder of your own runs.
report: install
	$(VENV)/bin/rewirejax report $(if $(filter command line environment,$(origin RESULTS)),$(RESULTS),$(CPU_RESULTS) --readme README.md)

test: install
	$(PY) -m pytest -q --durations=30

lint: install
	$(VENV)/bin/ruff check rewirejax experiments tests
	$(VENV)/bin/ruff format --check rewirejax experiments tests

bench: install
	$(PY) experiments/bench.py

# The prepared device benchmark (experiments/bench_device.py): on one GPU about 6 minutes,
# compiles included; writes experiments/results/device/bench_device.{json,md}. `make
# bench-device TINY=1` runs it at toy sizes on CPU (as its test does).
bench-device: install
	$(PY) experiments/bench_device.py $(if $(TINY),--tiny)

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
