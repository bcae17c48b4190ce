# Two commands do all the set-up on a fresh machine: `make serve` (the service) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MODEL_STORE := model_store
DEFAULT_ARCHIVE := $(MODEL_STORE)/food_rotation.mar
DEMO_WEIGHTS := weights/food_rotation_demo.pth
DEMO_VERSION := 1.0
HANDLER_FILES := $(wildcard handler/*.py) handler/model-config.yaml

.PHONY: serve stop test install java chromium archive lint demo-weights bench retrain clean

serve: install java $(DEFAULT_ARCHIVE)
	@$(PY) -m scripts.serving start

stop:
	@if [ -x $(PY) ]; then $(PY) -m scripts.serving stop; else echo "nothing to stop"; fi

test: install java chromium
	$(PY) -m ruff check .
	$(PY) -m pytest

install: $(INSTALLED)

# The venv is rebuilt when the pinned requirements change. The .pth puts handler/ (flat modules, as inside
# the archive) and the repo root (scripts.*) on the venv's path.
$(INSTALLED): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, torchvision, ts, yaml; from torchvision.ops import nms" \
		|| { echo "the venv's torch/torchvision/torchserve do not import: see above" >&2; exit 1; }
	@printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/handler" > $$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/food_rotation_serve.pth
	@touch $@

java:
	@scripts/ensure_java.sh

chromium:
	@scripts/ensure_chromium.sh

# Rebuilt when the handler, its config or the demo weights change, so a served archive is never stale.
$(DEFAULT_ARCHIVE): $(DEMO_WEIGHTS) $(HANDLER_FILES) scripts/archive.sh scripts/archive_metadata.py | $(INSTALLED)
	scripts/archive.sh --weights $(DEMO_WEIGHTS) --version $(DEMO_VERSION) --force

archive: $(DEFAULT_ARCHIVE)

lint: install
	$(PY) -m ruff check .

# Not part of `make test`: a few minutes on 2 cores, writes bench/RESULTS.md. Needs Debian's apache2-utils (ab)
# and captum (TorchServe's stock image_classifier, the peer, imports it).
bench: install java $(VENV)/.installed-bench
	@command -v ab >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq apache2-utils >/dev/null; } \
		|| { echo "bench needs ab: apt-get install apache2-utils" >&2; exit 1; }
	$(PY) bench/run_bench.py

$(VENV)/.installed-bench: requirements-bench.txt $(INSTALLED)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt 2>&1 | grep -v "^WARNING: Location" || true
	@touch $@

# Corrections collected on the admin page -> the next version, deployed as a canary through the smoke gate
# (`make serve` must be running). DATASET: every dataset by default, or a name, or name,name.
# RETRAIN_ARGS e.g. "--demo-scenes 200".
retrain: install
	$(PY) -m scripts.retrain $(if $(DATASET),--dataset $(DATASET)) $(RETRAIN_ARGS)

# Reproduces the shipped demo weights (about 20 minutes on 2 cores); see README.
demo-weights: install
	$(PY) scripts/make_demo_data.py data/demo --count 2400 --seed 0
	$(PY) scripts/make_demo_data.py data/demo_heldout --count 400 --seed 1
	$(PY) scripts/train.py data/demo --epochs 6 --seed 0 --out checkpoints/demo.tar
	$(PY) scripts/extract_model_weight.py checkpoints/demo.tar $(DEMO_WEIGHTS)
	$(PY) scripts/evaluate.py $(DEMO_WEIGHTS) data/demo_heldout --matrix weights/demo_confusion.png

clean: stop
	rm -rf .run $(DEFAULT_ARCHIVE)
