#!/usr/bin/env bash
# Create (or bring up to date) mmgfn's project-local virtual environment.
#
# Usage: bash tools/setup_env.sh
#
# Idempotent: a second run with unchanged requirements.txt and setup.py returns at once.
# Environment variables:
#   MMGFN_VENV         where the environment lives (default: <repo>/.venv)
#   MMGFN_WHEEL_CACHE  where the locally built mmcv wheel is kept between installs
#                      (default: ~/.cache/mmgfn/wheels)
#   PYTHON             interpreter used to create the environment (default: python3)
#   MMGFN_MMCV_CUDA    1: build mmcv's ops with CUDA as well (needs nvcc on PATH or in
#                      $CUDA_HOME/bin and a torch that sees a GPU; set TORCH_CUDA_ARCH_LIST
#                      to build for other GPUs than this machine's). Default: CPU ops
#                      only; then mmgfn runs mmcv's nms and RoIAlign through torchvision's
#                      CUDA kernels (mmgfn/utils/mmcv_ops.py). The two builds are cached
#                      in different folders (torch-<ver> and torch-<ver>-cu<cuda>).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMGFN_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CACHE="${MMGFN_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmgfn/wheels}"
REQ="$ROOT/requirements.txt"
STAMP="$VENV/.mmgfn-stamp"

log() { echo "[setup_env] $*"; }
pin() { grep -E "^$1==" "$REQ" | head -n1; }

MMCV_CUDA=0
[[ "${MMGFN_MMCV_CUDA:-0}" == 1 ]] && MMCV_CUDA=1
# the CPU build keeps the stamp it always had; the CUDA build adds a marker
want_stamp="$({ cat "$REQ" "$ROOT/setup.py"; if [[ "$MMCV_CUDA" == 1 ]]; then echo mmcv-cuda; fi; } \
  | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] \
    && "$VENV/bin/python" -c "import mmgfn" 2>/dev/null; then
  log "environment $VENV is up to date"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

SECONDS=0
log "installing build tools and $(pin torch) $(pin torchvision)"
"${PIP[@]}" "$(grep -E '^setuptools' "$REQ" | head -n1)" wheel ninja "$(pin torch)" "$(pin torchvision)"

torch_ver="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
mmcv_pin="$(pin mmcv)"
mmcv_ver="${mmcv_pin#mmcv==}"
wheel_dir="$CACHE/torch-$torch_ver"
build_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
ops_kind=CPU
build_time="about 10 minutes on 2 cores"
if [[ "$MMCV_CUDA" == 1 ]]; then
  nvcc="$(command -v nvcc || true)"
  [[ -z "$nvcc" && -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]] && nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  torch_cuda="$("$PY" -c 'import torch; print(torch.version.cuda if torch.cuda.is_available() else "")')"
  if [[ -z "$nvcc" || -z "$torch_cuda" ]]; then
    log "MMGFN_MMCV_CUDA=1 needs nvcc (found: ${nvcc:-none}) and a torch that sees a GPU" \
        "(torch.version.cuda with a GPU: ${torch_cuda:-none}); unset it for the CPU build"
    exit 1
  fi
  wheel_dir="$CACHE/torch-$torch_ver-cu${torch_cuda//./}"
  build_env=(FORCE_CUDA=1 "CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$nvcc")")}")
  ops_kind="CPU and CUDA (nvcc $nvcc, torch CUDA $torch_cuda)"
  build_time="the CUDA kernels take far longer than the CPU ones"
fi
mkdir -p "$wheel_dir"
if ! ls "$wheel_dir"/mmcv-"$mmcv_ver"-*.whl >/dev/null 2>&1; then
  log "building mmcv $mmcv_ver with its $ops_kind ops against torch $torch_ver ($build_time)"
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
      "mmcv==$mmcv_ver" -d "$build"
  tar -xzf "$build"/mmcv-"$mmcv_ver".tar.gz -C "$build"
  src="$build/mmcv-$mmcv_ver"
  # torch >= 2.14's headers need C++20; mmcv 2.1.0 hard-codes C++17.
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  env MMCV_WITH_OPS=1 "${build_env[@]}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$PY" -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation \
      -w "$wheel_dir" "$src"
else
  log "using cached mmcv wheel from $wheel_dir"
fi

log "installing requirements.txt and mmgfn (editable)"
"${PIP[@]}" --find-links "$wheel_dir" -r "$REQ"
# pip keeps an installed mmcv of the same version: swap in this mode's build
# where the installed one was built the other way
have_cuda_ops="$("$PY" -c 'from mmcv.ops import get_compiling_cuda_version as v
print(int(v() != "not available"))' 2>/dev/null || echo none)"
if [[ "$have_cuda_ops" != "$MMCV_CUDA" ]]; then
  log "installing mmcv $mmcv_ver with $ops_kind ops from $wheel_dir"
  "${PIP[@]}" --no-deps --force-reinstall "$(ls "$wheel_dir"/mmcv-"$mmcv_ver"-*.whl | head -n1)"
fi
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

"$PY" - <<'PY'
import mmcv, mmdet, mmengine, mmpretrain, torch, torchvision
from mmcv.ops import nms, RoIAlign  # noqa: F401  compiled ops present
import mmpretrain.models  # noqa: F401  needs torchvision
import imagecorruptions  # noqa: F401
print(f'[setup_env] torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, '
      f'mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}')
PY
echo "$want_stamp" > "$STAMP"
log "done in ${SECONDS}s"
