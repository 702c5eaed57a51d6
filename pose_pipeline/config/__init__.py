"""The workflow config: its schema, validation with did-you-mean, and defaults."""
