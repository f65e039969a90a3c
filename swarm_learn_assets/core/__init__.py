"""Pure domain logic of swarm-learn. Nothing in here imports Dagster."""
