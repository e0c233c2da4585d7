#!/usr/bin/env bash
# Creates (or completes) the project environment in .venv/ on the real OpenMMLab stack.
#
# Idempotent: a second run finds every piece in place and returns within seconds.
# mmcv 2.0.1 has only an sdist that does not build against torch 2.13 as published
# (it asks for C++14; torch 2.13's headers need C++17), so it is built once with that
# flag changed and the wheel is cached outside the checkout, keyed by the versions that
# determine its ABI. CI clones afresh each time; the cache spares it a 15 minute build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_BIN="${PYTHON:-python3.11}"
TORCH_VERSION=2.13.0
MMCV_VERSION=2.0.1
CONSTRAINTS="$ROOT/requirements/constraints.txt"
STAMP="$VENV/.mmfeatvis-env-$(sha1sum "$ROOT/requirements/constraints.txt" "$ROOT/setup.py" "$ROOT/setup.cfg" | sha1sum | cut -c1-12)"

log() { echo "[setup_env] $*"; }

if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import mmcv.ops, mmfeatvis" 2>/dev/null; then
    log "environment in .venv is complete"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PY_BIN"
    "$PY_BIN" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# setuptools 81 still ships pkg_resources, which mmcv's setup.py imports.
"${PIP[@]}" install -q -c "$CONSTRAINTS" "torch==$TORCH_VERSION" "setuptools==81.*" wheel ninja

PY_TAG=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mmfeatvis/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PY_TAG-$(uname -m)"
if ! ls "$CACHE"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with CPU ops (about 15 minutes on 2 cores, once per machine)"
    BUILD="$(mktemp -d)"
    "${PIP[@]}" install -q -c "$CONSTRAINTS" addict packaging Pillow pyyaml yapf numpy opencv-python "mmengine==0.10.7"
    # pip itself fetches the sdist, so the user's pip configuration (index,
    # mirror, proxy) applies; without build isolation its metadata step sees
    # the torch installed above rather than the newest one.
    "${PIP[@]}" download -q --no-binary :all: --no-deps --no-build-isolation \
        -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    sed -i 's/-std=c++14/-std=c++17/g' "$SRC/setup.py"
    mkdir -p "$CACHE.partial"
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$CACHE.partial" .)
    rm -rf "$CACHE" && mv "$CACHE.partial" "$CACHE"
    rm -rf "$BUILD"
fi
log "installing mmcv from $CACHE"
"${PIP[@]}" install -q -c "$CONSTRAINTS" "$CACHE"/mmcv-*.whl

log "installing the OpenMMLab stack and mmfeatvis (editable)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -e "$ROOT[all,tests]"
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmyolo, mmseg, mmfeatvis"
rm -f "$VENV"/.mmfeatvis-env-*
touch "$STAMP"
log "environment ready"
