# Two commands do all the set-up on a fresh machine: `make serve` (the service) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MODEL_STORE := model_store
DEFAULT_ARCHIVE := $(MODEL_STORE)/food_rotation.mar
# The shipped default: ImageNet-pretrained EfficientNet-Lite0 fine-tuned on real photos, then a new head fitted on
# its frozen features with more real photos and its threshold chosen leaving one source out (make weights).
SHIPPED_WEIGHTS := weights/food_rotation_lite0.pth
E2E_WEIGHTS := weights/food_rotation_lite0_e2e.pth
DEMO_WEIGHTS := weights/food_rotation_demo.pth
DEFAULT_VERSION := 1.0
REAL_DATA := data/real
ROTATION_SET := data/rotation_set
# What every .mar carries: the adapter, its config and the library it adapts (not training/).
HANDLER_FILES := $(wildcard handler/*.py) handler/model-config.yaml $(wildcard food_rotation/*.py)
# PROFILE=small make serve: the 1 vCPU / 2 GiB profile (deploy/profiles/small: one worker, a smaller JVM).
PROFILE ?=
export PROFILE
PROFILE_STAMP := $(MODEL_STORE)/.profile
ARCHIVE_WORKERS := $(if $(filter small,$(PROFILE)),--workers 1,)

.PHONY: FORCE serve stop test test-slow test-unit install java chromium ab postgres archive lint real-data gate-photos weights demo-weights bench retrain clean

serve: install java $(DEFAULT_ARCHIVE) gate-photos
	@$(PY) scripts/serving.py start

# The smoke gate's real photos (make real-data, once: a few Debian packages); where they cannot be fetched the
# service starts all the same, and says that new versions are gated on the generated samples only.
gate-photos: install
	@$(MAKE) --no-print-directory real-data || echo "make real-data failed (above): the gate scores the samples only" >&2

stop:
	@if [ -x $(PY) ]; then $(PY) scripts/serving.py stop; else echo "nothing to stop"; fi

# make test: ruff and every tier but the slow ones (unit, integration on real TorchServe/gateway/PostgreSQL, the
# browser; about 5 minutes on 2 cores): what to run before each commit. make test-slow: the real-stack tiers that
# wait for restarts, key expiry, load and several pods (about 6 minutes). CI (.ci/run) runs both. make test-unit:
# the unit tests alone (about 2 minutes, no servers but PostgreSQL).
test: install java chromium ab postgres real-data
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow"

test-slow: install java chromium ab postgres real-data
	$(PY) -m pytest -m "slow or last"

test-unit: install postgres real-data
	$(PY) -m ruff check .
	$(PY) -m pytest tests/unit

install: $(INSTALLED)

# The venv is rebuilt when the pinned requirements or the package's definition change; `pip install -e .` makes
# food_rotation (training included), auth_plugin and operations importable from anywhere (pyproject.toml).
$(INSTALLED): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, torchvision, ts, yaml; from torchvision.ops import nms" \
		|| { echo "the venv's torch/torchvision/torchserve do not import: see above" >&2; exit 1; }
	@rm -f $$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/food_rotation_serve.pth
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	@touch $@

java:
	@scripts/ensure_java.sh

chromium:
	@scripts/ensure_chromium.sh

# Rebuilt when the handler, its config, the shipped weights or the PROFILE change, so a served archive is never stale.
$(DEFAULT_ARCHIVE): $(SHIPPED_WEIGHTS) $(HANDLER_FILES) scripts/archive.sh food_rotation/training/archive.py \
		$(PROFILE_STAMP) | $(INSTALLED)
	scripts/archive.sh --weights $(SHIPPED_WEIGHTS) --version $(DEFAULT_VERSION) --force $(ARCHIVE_WORKERS)

# Its content is the profile the archive was built for; it changes (and so rebuilds the archive) only with PROFILE.
$(PROFILE_STAMP): FORCE
	@mkdir -p $(MODEL_STORE); echo "$(or $(PROFILE),default)" | cmp -s - $@ || echo "$(or $(PROFILE),default)" > $@

FORCE:

archive: $(DEFAULT_ARCHIVE)

lint: install
	$(PY) -m ruff check .

# About 10 minutes on 2 cores, writes bench/RESULTS.md (make test runs its quick pass). Needs Debian's
# apache2-utils (ab, installed as root) and captum (requirements-dev.txt: the stock peer imports it).
bench: install java ab
	$(PY) bench/run_bench.py

ab:
	@scripts/ensure_ab.sh

# The tests' throwaway PostgreSQL (tests/postgres.py): Debian's server binaries, installed as root.
postgres:
	@scripts/ensure_postgres.sh

# Not part of `make test`: the candidate models side by side (held-out quality, TorchServe images/s, worker memory),
# a few minutes on 2 cores, writes bench/MODEL_QUALITY.md. Needs the shipped weights and data/rotation_set:
# make weights.
# The faster option (bench/MODEL_EXPERIMENTS.md): a mobilenet_v3_small distilled from the shipped Lite0, served
# turn-averaged; about 65 minutes on 2 CPU cores. Not the default: less accurate on real photos and text.
STUDENT_WEIGHTS := weights/food_rotation_student.pth
.PHONY: student-weights
student-weights: install real-data
	$(PY) -m food_rotation.training.real_scenes $(REAL_DATA) $(ROTATION_SET)
	$(PY) -m food_rotation.training.distill_student $(ROTATION_SET) --teacher $(SHIPPED_WEIGHTS) --init $(DEMO_WEIGHTS) \
		--rounds 3 --epochs 5 --turn-averaging --out checkpoints/student.tar
	$(PY) scripts/extract_model_weight.py checkpoints/student.tar $(STUDENT_WEIGHTS)
	$(PY) scripts/evaluate.py $(STUDENT_WEIGHTS) $(ROTATION_SET)/heldout/real --fit-temperature --write-temperature

.PHONY: bench-quality
bench-quality: install java
	$(PY) bench/model_quality.py --candidate lite0-160=$(SHIPPED_WEIGHTS) \
		--candidate lite0-160-6-epochs=weights/food_rotation_lite0_e6.pth --candidate demo=$(DEMO_WEIGHTS)

# Corrections collected on the admin page -> the next version, fine-tuned from the version served by default
# (asked of the proxy: `make serve` must be running), deployed as a canary through the smoke gate.
# DATASET: every dataset by default, or a name, or name,name. RETRAIN_ARGS e.g. "--demo-scenes 200" or "--init demo".
retrain: install real-data
	$(PY) scripts/retrain.py $(if $(DATASET),--dataset $(DATASET)) $(RETRAIN_ARGS)

# The real upright photos of four Debian packages (apt-get download, no root needed); idempotent, checksummed.
# Their held-out split is linked into $(ROTATION_SET)/heldout/real: the smoke gate's real photos (PROXY_GATE_REAL_DIR).
real-data: install
	@$(PY) scripts/real_data.py $(REAL_DATA)
	@$(PY) -m food_rotation.training.real_scenes $(REAL_DATA) $(ROTATION_SET) --photos-only

# Reproduces the shipped weights from the real photos, composites, rendered text and demo scenes: EfficientNet-Lite0
# at 160 px, fine-tuned end to end for 12 epochs (about 2 hours on 2 CPU cores, a few minutes on a GPU), whose
# frozen backbone then gets a new head fitted on every real photo source, its temperature and threshold chosen
# leaving one source out (food_rotation/training/fit_head.py, about 10 minutes; set the min_confidence it prints in
# handler/model-config.yaml); then the held-out figures are recorded in the weights' .json (what a version shows).
weights: real-data
	$(PY) -m food_rotation.training.real_scenes $(REAL_DATA) $(ROTATION_SET)
	$(PY) scripts/train_pretrained.py $(ROTATION_SET) --end-to-end --image-size 160 --frozen-blocks 2 --epochs 12 \
		--out checkpoints/lite0.tar
	$(PY) scripts/extract_model_weight.py checkpoints/lite0.tar $(E2E_WEIGHTS)
	$(PY) scripts/evaluate.py $(E2E_WEIGHTS) $(ROTATION_SET)/heldout/real --write-temperature
	$(PY) -m food_rotation.training.fit_head $(E2E_WEIGHTS) $(REAL_DATA) --out $(SHIPPED_WEIGHTS)
	$(PY) scripts/evaluate.py $(SHIPPED_WEIGHTS) $(ROTATION_SET)/heldout/real --record \
		--matrix weights/lite0_confusion.png --curve weights/lite0_harm_fix.png

# The shipped model on sources it never saw (bench/MODEL_QUALITY.md): the head recipe fitted without each source
# group in turn, on the photos as they are and on centre squares (at the shipped threshold; the line above its
# table says what the rule would choose on the squares themselves), and the end-to-end model as it is per group.
.PHONY: bench-sources
SHIPPED_MIN_CONFIDENCE = $(shell sed -n 's/^ *min_confidence: *\([0-9.]*\).*/\1/p' handler/model-config.yaml)
bench-sources: install real-data
	$(PY) scripts/evaluate.py $(E2E_WEIGHTS) $(REAL_DATA) --leave-one-source-out --curve bench/by_source_harm_fix.png \
		--markdown bench/by_source_left_out.md --json bench/by_source_left_out.json
	$(PY) scripts/evaluate.py $(E2E_WEIGHTS) $(REAL_DATA) --leave-one-source-out --square --min-confidence $(SHIPPED_MIN_CONFIDENCE) \
		--markdown bench/by_source_left_out_square_shipped.md
	$(PY) scripts/evaluate.py $(E2E_WEIGHTS) $(REAL_DATA) --by-source --min-confidence 0.85 \
		--markdown bench/by_source_e2e_as_it_is.md

# The demo-scenes-only weights (mobilenet_v3_small, about 20 minutes on 2 cores): kept by name for comparison.
demo-weights: install
	$(PY) -m food_rotation.training.make_demo_data data/demo --count 2400 --seed 0
	$(PY) -m food_rotation.training.make_demo_data data/demo_heldout --count 400 --seed 1
	$(PY) scripts/train.py data/demo --epochs 6 --seed 0 --out checkpoints/demo.tar
	$(PY) scripts/extract_model_weight.py checkpoints/demo.tar $(DEMO_WEIGHTS)
	$(PY) scripts/evaluate.py $(DEMO_WEIGHTS) data/demo_heldout --matrix weights/demo_confusion.png

clean: stop
	rm -rf .run $(DEFAULT_ARCHIVE)
