#!/usr/bin/env bash
# Weights + version -> a versioned TorchServe archive in model_store/, via torch-model-archiver.
#
#   scripts/archive.sh --weights weights/food_rotation_lite0.pth --version 1.0 [--name food_rotation]
#                      [--archive-name food_rotation-v1.0] [--export-path model_store] [--config FILE] [--workers N] [--force]
#
# The work is food_rotation/training/archive.py's (retraining calls it as a function): the archive holds the handler
# and its modules, the library they import (food_rotation, without its training/ and operations/), the weights-only
# file, model-config.yaml and a metadata.json (arch, version, accuracies, sha256 of the weights, calibration,
# created-at).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-$root/.venv/bin/python}" \
    -m food_rotation.training.archive "$@"
