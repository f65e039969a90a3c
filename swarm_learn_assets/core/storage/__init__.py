"""Where data lives and how it is written: the data-root layout (the only place paths are built),
atomic writes, cross-process locks, scenario and session names, the landing watch that keeps
discovery cheap, crash points for the crash tests, and readers that scan many per-session files
in one DuckDB query."""
