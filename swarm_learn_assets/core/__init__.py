"""Pure domain logic of swarm-learn. Nothing in here imports Dagster (`defs/` wires it in).

The folders follow the pipeline, each concept in one place:

* `storage/`   where everything lives under the data root, atomic writes, locks, names, the landing
               watch and the readers that take many per-session files at once;
* `contract/`  the landing-record contract (schema, validation, typed records) and its importers;
* `episodes/`  learn models: what an episode is, how it is judged, the vectorised cut, outcome counts;
* `stats/`     session snapshots, their merge, the offline model, queries over time, the status table;
* `llm/`       the decision LLM: prompts, training rows and datasets, incremental training, the gate,
               the policies that decide a worker's next action;
* `triggers/`  training triggers: the rules, their text syntax, the state they watch;
* `stages/`    the stages as functions over the data root: a batch of sessions in one pass, a
               scenario model kept current.
"""
