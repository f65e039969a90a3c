#!/usr/bin/env bash
# Create ./.venv and install swarm-learn with the exact versions CI ran (constraints.txt).
# CPU PyTorch comes first from its pinned wheel; any other torch request would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
echo "swarm-learn installed in $(pwd)/.venv"
