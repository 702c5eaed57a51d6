"""A trained model applied: the inference engine, predict, infer, export, prediction files."""
