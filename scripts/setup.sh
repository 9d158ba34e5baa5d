#!/usr/bin/env bash
# Idempotent set-up: Debian packages for the synthetic stream, then a venv in .venv with the pins.
set -euo pipefail
cd "$(dirname "$0")/.."
# postgresql: MLflow server backend; slurm-wlm + munge: the single-node Slurm of tests/scale;
# chromium: headless screenshots of the MLflow UI (experiments/screenshot.py, its test)
APT_PACKAGES="espeak-ng flite sox festival festvox-kallpc16k festvox-us-slt-hts postgresql slurm-wlm munge chromium"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.installed-$(cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[setup] creating .venv (pinned Python packages; a few minutes the first time)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*; touch "$stamp"
fi
