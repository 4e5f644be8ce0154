"""Fine-tuning stage: LoRA (or full) training on Ray Train, tracked in MLflow."""
