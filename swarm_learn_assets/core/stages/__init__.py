"""The pipeline stages as plain functions over the data root: a batch of sessions validated, cut
into episodes and summarised in one pass, and a scenario model kept current from its snapshots.
`defs/` turns each into assets; tests and benchmarks call them directly."""
