"""Dagster wiring only: each module turns one pipeline stage of `core` into assets, checks or automation."""
