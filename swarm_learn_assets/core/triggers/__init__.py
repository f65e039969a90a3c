"""Training triggers (the reference `TrainTrigger`): the rules, a small text syntax for them, and
the per-scenario state they are evaluated on, folded from the pipeline's own records."""
