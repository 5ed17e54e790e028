"""Train stage: optax fine-tuning of a converted generator."""
