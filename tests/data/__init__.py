"""Data tests: the registry, dvc-fetch, tokenize, and expectations on the dataset and tokenized output."""
