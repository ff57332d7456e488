# One-command entry points. PYTHON/PIP can be overridden, e.g. `make test PIP="uv pip"`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# torch is installed first and pinned so that pip does not pull a multi-GB CUDA build where a CPU wheel
# is wanted; on a CUDA machine use e.g. `make setup TORCH=torch==2.13.0` with PyTorch's CUDA index set up.
TORCH ?= torch==2.13.0
CORES ?= 8
# training jobs running at once (`resources: gpu=1` per training job): 1 per GPU; on a CPU-only machine 2 lets
# two training jobs share the cores
GPU_SLOTS ?= 1
MIRROR ?= ../shared/data/office-caltech-10

.PHONY: setup pipeline quickstart quickstart-full quickstart-pwcf surf test test-fast test-reverse

setup:
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[test]"

# The paper's experiment (params.yaml defaults: Office-Home, VGG-F, 64 bits, 12 tasks).
pipeline: setup
	snakemake --cores $(CORES) --resources gpu=1

# Office-Caltech-10 + EfficientNet-Lite0, fully offline with a local copy of the images at $(MIRROR).
# quickstart: a first look (DAH, DAH-e, source-only, JDA, NoDA; 4 tasks, seed 0); quickstart-full: every method,
# 12 tasks, 3 seeds, Figure 3 (it reuses every job of quickstart).
quickstart: setup
	$(PYTHON) -m stages.preset quickstart --set data.mirror=$(MIRROR)
	snakemake --cores $(CORES) --resources gpu=$(GPU_SLOTS)

quickstart-full: setup
	$(PYTHON) -m stages.preset quickstart-full --set data.mirror=$(MIRROR)
	snakemake --cores $(CORES) --resources gpu=$(GPU_SLOTS)

# The quickstart on the pwcf protocol (10 % of the target as queries, left out of training; 16/32/64/128 bits).
quickstart-pwcf: setup
	$(PYTHON) -m stages.preset quickstart-pwcf --set data.mirror=$(MIRROR)
	snakemake --cores $(CORES) --resources gpu=$(GPU_SLOTS)

# The classic shallow benchmark: SURF-800 features of Office-Caltech-10 (from $(MIRROR)/features or downloaded).
surf: setup
	$(PYTHON) -m stages.preset surf --set data.mirror=$(MIRROR)
	snakemake --cores $(CORES) --resources gpu=$(GPU_SLOTS)

test: setup
	$(PYTHON) -m pytest -q

test-fast:
	$(PYTHON) -m pytest -q -m "not pipeline"

# the non-pipeline tests in reverse order (CI runs this after `make test`: tests must pass in any order)
test-reverse:
	$(PYTHON) -m pytest -q -m "not pipeline" --reverse
