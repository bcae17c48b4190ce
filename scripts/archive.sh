#!/usr/bin/env bash
# Weights + version -> a versioned TorchServe archive in model_store/, via torch-model-archiver.
#
#   scripts/archive.sh --weights weights/food_rotation_demo.pth --version 1.0 [--name food_rotation]
#                      [--archive-name food_rotation-v1.0] [--export-path model_store] [--config FILE] [--force]
#
# The archive holds the handler, the model definition, the weights-only file, model-config.yaml and a
# metadata.json (arch, version, train/val accuracy, sha256 of the weights, created-at).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
archiver=${TORCH_MODEL_ARCHIVER:-$root/.venv/bin/torch-model-archiver}
name=food_rotation
version=""
weights=""
archive_name=""
export_path=$root/model_store
config=$root/handler/model-config.yaml
force=0

die() { echo "archive.sh: $*" >&2; exit 2; }
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --weights) weights=${2:-}; shift 2 ;;
    --version) version=${2:-}; shift 2 ;;
    --name) name=${2:-}; shift 2 ;;
    --archive-name) archive_name=${2:-}; shift 2 ;;
    --export-path) export_path=${2:-}; shift 2 ;;
    --config) config=${2:-}; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[ -n "$weights" ] || die "--weights is required (a .pth from scripts/extract_model_weight.py)"
[ -f "$weights" ] || die "weights file not found: $weights"
[ -f "${weights%.*}.json" ] || die "${weights%.*}.json is missing: make weights with scripts/extract_model_weight.py"
[ -n "$version" ] || die "--version is required (e.g. 1.0)"
[[ "$version" =~ ^[0-9]+(\.[0-9]+){0,2}$ ]] || die "bad version '$version': use 1, 1.2 or 1.2.3"
[[ "$name" =~ ^[A-Za-z][A-Za-z0-9_-]{0,63}$ ]] || die "bad model name '$name': letters, digits, _ and -"
archive_name=${archive_name:-$name}
[[ "$archive_name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ ]] || die "bad archive name '$archive_name'"
[ -f "$config" ] || die "model config not found: $config"
[ -x "$archiver" ] || die "torch-model-archiver not found at $archiver (run make install)"
mkdir -p "$export_path"
target=$export_path/$archive_name.mar
[ ! -e "$target" ] || [ "$force" = 1 ] || die "$target exists; pass --force to replace it"

# torch-model-archiver scratches in $TMPDIR/<model-name> and deletes it: give every run its own TMPDIR.
stage=$(mktemp -d "${TMPDIR:-/tmp}/archive.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tmp" "$stage/export"
"$python" "$root/scripts/archive_metadata.py" --weights "$weights" --name "$name" --version "$version" \
  --out "$stage/metadata.json"
# Every other module of handler/ travels as an extra file: the handler imports them by name inside the worker.
extra=""
for module in "$root"/handler/*.py; do
  case "$(basename "$module")" in rotation_model.py|rotation_handler.py) ;; *) extra="$extra$module," ;; esac
done
TMPDIR=$stage/tmp "$archiver" \
  --model-name "$name" \
  --version "$version" \
  --model-file "$root/handler/rotation_model.py" \
  --serialized-file "$weights" \
  --handler "$root/handler/rotation_handler.py" \
  --extra-files "$extra$stage/metadata.json" \
  --config-file "$config" \
  --export-path "$stage/export"
mv -f "$stage/export/$name.mar" "$target"
echo "wrote $target ($name $version, $(du -h "$target" | cut -f1))"
