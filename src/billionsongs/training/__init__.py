"""Training: read lyrics datasets, train a tokenizer, pack songs into windows, train, export, evaluate."""
