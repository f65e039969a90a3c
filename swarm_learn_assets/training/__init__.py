"""Training half: base model, LoRA training, evaluation, adapter registry and applicators."""
