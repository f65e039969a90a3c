"""swarm-learn: continuous learning for an agent swarm, as Dagster assets."""

__version__ = "0.1.0"
