"""Statistics over sessions (DESIGN §6, §7): the per-session snapshot, the merge of snapshots into
a scenario or global model, the offline model, queries over time and the per-scenario status table."""
