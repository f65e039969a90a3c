"""Serving the decision LLM: llama.cpp sources, server builds, GGUF adapters and server processes."""
