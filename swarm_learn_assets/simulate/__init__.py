"""Synthetic swarm: the embedded default data source, writing landing files like the real swarm."""

from swarm_learn_assets.simulate.swarm import simulate

__all__ = ["simulate"]
