# Every target sets itself up: a fresh clone needs nothing but python3 (3.11+) and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PREP := $(VENV)/bin/kohaku-prep
INSTALLED := $(VENV)/.installed
# extra pip flags, e.g. PIP_FLAGS="--no-index --find-links .whl" on a machine without a package registry
PIP_FLAGS ?=

SAMPLE := build/sample
SAMPLE_DATASET := build/sample-dataset
# Epsilon's quotas scaled to the sample (~650 posts in [0, 2M), ~980 in [2M, 5M)), and
# id-range folders wide enough for its sparse ids
SAMPLE_QUOTAS := selection.pools.0.take=320 selection.pools.1.take=650 output.ids_per_folder=1000000

# make train: the Epsilon preset on the sample dataset unless PRESET / TRAIN_ARGS say otherwise;
# DRY_RUN=1 writes the run folder and prints the command without launching.
PRESET ?= epsilon
TRAIN_ARGS ?= run.dataset=$(SAMPLE_DATASET) run.dir=build/sample-run

.PHONY: setup setup-train dataset train smoke gpu-check bench test clean

# open-clip-torch without its dependencies: `kohaku-prep tokenizers` needs only the CLIP BPE file it ships
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_FLAGS) -e '.[test]'
	$(PY) -m pip install -q $(PIP_FLAGS) --no-deps open-clip-torch==3.3.0
	touch $@

setup: $(INSTALLED)

# The trainer's side: the sd-scripts submodule (where GitHub is reachable; else put a checkout at
# third_party/sd-scripts or set KOHAKU_SD_SCRIPTS) and its requirements in the same environment, which
# also turns on the integration tier of `make test`. Large: torch with torchvision is several GB.
setup-train: $(INSTALLED)
	git submodule update --init third_party/sd-scripts || \
		echo "note: could not fetch sd-scripts; use a checkout at third_party/sd-scripts or KOHAKU_SD_SCRIPTS"
	$(PY) -m pip install -q $(PIP_FLAGS) -e '.[test,train]'

dataset: $(INSTALLED)
	$(PREP) sample $(SAMPLE)
	$(PREP) dataset --preset epsilon --metadata $(SAMPLE)/metadata/flat --images $(SAMPLE)/images \
		--out $(SAMPLE_DATASET) --force $(SAMPLE_QUOTAS)

train: $(INSTALLED)
	$(PREP) train --preset $(PRESET) $(if $(DRY_RUN),--dry-run) $(TRAIN_ARGS)

# Real runs in parts of the unmodified trainer on the sample (need make setup-train). smoke: this
# machine's CPU, a run killed in its second part and continued, and an uninterrupted one, whose LoKr
# files must be identical (about 45 minutes on a quiet 2-core machine, 22 GB; the random SDXL checkpoint
# is cached). gpu-check: one GPU at 1024 px, killed and continued, figures in build/gpu-check.json.
smoke: dataset
	$(PY) scripts/smoke.py --profile smoke --json build/smoke.json

gpu-check: dataset
	$(PY) scripts/smoke.py --profile gpu --json build/gpu-check.json

# The dataset stage at danbooru2023 scale (7.35M posts), each target a ratio to a floor timed in the same run,
# the two sides in turn for 5 rounds (BENCH_ARGS="--quick" for 300k posts, "--rounds N", "--json FILE").
# Generating the input takes several minutes once; it is cached in build/bench-cache. The predecessor,
# HakuBooru, is timed in an environment of its own: it needs peewee 3.17 (4.x breaks its database loading)
# and imports tqdm without declaring it.
HAKUBOORU_VENV := build/hakubooru-venv
$(HAKUBOORU_VENV)/.installed:
	$(PYTHON) -m venv $(HAKUBOORU_VENV)
	$(HAKUBOORU_VENV)/bin/python -m pip install -q hakubooru==0.0.3 peewee==3.17.9 tqdm==4.70.1 \
		pyarrow==26.0.1 numpy==2.4.6
	touch $@

bench: $(INSTALLED) $(HAKUBOORU_VENV)/.installed
	$(PY) scripts/bench.py --hakubooru-python $(HAKUBOORU_VENV)/bin/python $(BENCH_ARGS)

# lint and types first (configured in pyproject.toml), then the product's tests, then apart the reference
# tier (tests/reference: the self-tests of the caption oracle), so that each tier's count shows on its own.
# Skips and expected failures (known faults) are listed with their reasons.
test: $(INSTALLED)
	$(PY) -m ruff check
	$(PY) -m mypy
	$(PY) -m pytest -q -rsx -m "not reference"
	$(PY) -m pytest -q -rsx -m reference

clean:
	rm -rf build
