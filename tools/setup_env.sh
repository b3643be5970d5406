#!/usr/bin/env bash
# Create (or bring up to date) mmgfn's project-local virtual environment.
#
# Usage: bash tools/setup_env.sh
#
# Idempotent: a second run with unchanged requirements.txt and setup.py returns at once.
# By default mmcv 2.1.0 is installed WITHOUT its compiled ops (no C++ compiler needed, seconds
# to build): its wheel carries a two-line mmcv/_ext.py that runs mmgfn/utils/mmcv_ext.py, which
# computes the three ops mmdet's two-stage detectors reach (nms, roi_align forward/backward)
# through torchvision on every device; every other compiled op fails at its first call with one
# line naming it and the full build.
# Environment variables:
#   MMGFN_MMCV_OPS     1: build mmcv's own compiled ops from source instead (CPU kernels; about
#                      10 minutes on 2 cores and a C++ compiler)
#   MMGFN_MMCV_CUDA    1: build mmcv's ops with CUDA as well (implies MMGFN_MMCV_OPS=1; needs
#                      nvcc on PATH or in $CUDA_HOME/bin and a torch that sees a GPU; set
#                      TORCH_CUDA_ARCH_LIST to build for other GPUs than this machine's).
#                      With a CPU-only build, mmgfn runs mmcv's nms and RoIAlign through
#                      torchvision's CUDA kernels (mmgfn/utils/mmcv_ops.py).
#   MMGFN_VENV         where the environment lives (default: <repo>/.venv)
#   MMGFN_WHEEL_CACHE  where the locally built mmcv wheels are kept between installs
#                      (default: ~/.cache/mmgfn/wheels; one folder per kind of build)
#   PYTHON             interpreter used to create the environment (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMGFN_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CACHE="${MMGFN_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmgfn/wheels}"
REQ="$ROOT/requirements.txt"
STAMP="$VENV/.mmgfn-stamp"

log() { echo "[setup_env] $*"; }
pin() { grep -E "^$1==" "$REQ" | head -n1; }

# which mmcv: standin (default), cpu (its compiled CPU ops) or cuda (CPU and CUDA ops)
MMCV_KIND=standin
[[ "${MMGFN_MMCV_OPS:-0}" == 1 ]] && MMCV_KIND=cpu
[[ "${MMGFN_MMCV_CUDA:-0}" == 1 ]] && MMCV_KIND=cuda
want_stamp="$({ cat "$REQ" "$ROOT/setup.py"; echo "mmcv-$MMCV_KIND"; } | sha256sum | cut -d' ' -f1)"
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
case "$MMCV_KIND" in
  standin)
    wheel_dir="$CACHE/standin"
    build_env=(MMCV_WITH_OPS=0)
    what="without compiled ops (torchvision stand-in for nms and RoIAlign)";;
  cpu)
    wheel_dir="$CACHE/torch-$torch_ver"
    build_env=(MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
    what="with its CPU ops against torch $torch_ver (about 10 minutes on 2 cores)";;
  cuda)
    nvcc="$(command -v nvcc || true)"
    [[ -z "$nvcc" && -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]] && nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
    torch_cuda="$("$PY" -c 'import torch; print(torch.version.cuda if torch.cuda.is_available() else "")')"
    if [[ -z "$nvcc" || -z "$torch_cuda" ]]; then
      log "MMGFN_MMCV_CUDA=1 needs nvcc (found: ${nvcc:-none}) and a torch that sees a GPU" \
          "(torch.version.cuda with a GPU: ${torch_cuda:-none}); unset it for the default install"
      exit 1
    fi
    wheel_dir="$CACHE/torch-$torch_ver-cu${torch_cuda//./}"
    build_env=(MMCV_WITH_OPS=1 FORCE_CUDA=1 "CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$nvcc")")}")
    what="with its CPU and CUDA ops (nvcc $nvcc, torch CUDA $torch_cuda; far longer than CPU)";;
esac
mkdir -p "$wheel_dir"
if ! ls "$wheel_dir"/mmcv-"$mmcv_ver"-*.whl >/dev/null 2>&1; then
  log "building mmcv $mmcv_ver $what"
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
      "mmcv==$mmcv_ver" -d "$build"
  tar -xzf "$build"/mmcv-"$mmcv_ver".tar.gz -C "$build"
  src="$build/mmcv-$mmcv_ver"
  if [[ "$MMCV_KIND" == standin ]]; then
    # keep the distribution's name "mmcv" (mmdet requires it; MMCV_WITH_OPS=0 would call it
    # mmcv-lite) and add the stand-in for the compiled ops, which runs mmgfn's file, so an
    # update of mmgfn needs no new mmcv wheel
    sed -i "s/name='mmcv' if os.getenv('MMCV_WITH_OPS', '1') == '1' else 'mmcv-lite'/name='mmcv'/" \
      "$src/setup.py"
    grep -q "^    name='mmcv',$" "$src/setup.py" || { log "mmcv's setup.py changed: cannot name the build"; exit 1; }
    cat > "$src/mmcv/_ext.py" <<'STANDIN'
"""mmcv's compiled ops, stood in for by mmgfn/utils/mmcv_ext.py (see there)."""
import importlib.util as _util
import os as _os

_spec = _util.find_spec('mmgfn')  # finds the package without importing it
if _spec is None or not _spec.submodule_search_locations:
    raise ImportError('mmcv was installed without its compiled ops by mmgfn\'s '
                      'tools/setup_env.sh; its stand-in mmcv._ext runs '
                      'mmgfn/utils/mmcv_ext.py, but mmgfn is not installed')
__file__ = _os.path.join(list(_spec.submodule_search_locations)[0], 'utils',
                         'mmcv_ext.py')
with open(__file__, encoding='utf-8') as _file:
    exec(compile(_file.read(), __file__, 'exec'))
del _util, _os, _spec, _file
STANDIN
  else
    # torch >= 2.14's headers need C++20; mmcv 2.1.0 hard-codes C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  fi
  env "${build_env[@]}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$PY" -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation \
      -w "$wheel_dir" "$src"
else
  log "using cached mmcv wheel from $wheel_dir"
fi

log "installing requirements.txt and mmgfn (editable)"
"${PIP[@]}" --find-links "$wheel_dir" -r "$REQ"
# pip keeps an installed mmcv of the same version: swap in this mode's build
# where the installed one is of another kind
have_kind="$("$PY" -c 'import mmcv._ext as e
if getattr(e, "MMGFN_STANDIN", False): print("standin")
else: print("cpu" if e.get_compiling_cuda_version() == "not available" else "cuda")' \
  2>/dev/null || echo none)"
if [[ "$have_kind" != "$MMCV_KIND" ]]; then
  log "installing mmcv $mmcv_ver $what from $wheel_dir (installed: $have_kind)"
  "${PIP[@]}" --no-deps --force-reinstall "$(ls "$wheel_dir"/mmcv-"$mmcv_ver"-*.whl | head -n1)"
fi
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

"$PY" - <<'PY'
import mmcv, mmdet, mmengine, mmpretrain, torch, torchvision
from mmcv.ops import nms, RoIAlign  # noqa: F401  ops (compiled or stand-in) load
import mmpretrain.models  # noqa: F401  needs torchvision
import imagecorruptions  # noqa: F401
import mmcv._ext
ops = ('stand-in (nms, RoIAlign through torchvision)'
       if getattr(mmcv._ext, 'MMGFN_STANDIN', False) else 'compiled')
print(f'[setup_env] torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__} ({ops} ops), '
      f'mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}')
PY
echo "$want_stamp" > "$STAMP"
log "done in ${SECONDS}s"
