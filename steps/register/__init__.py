"""Register step: best hpo trial -> model version with alias challenger; champion gate; lineage."""
