"""The project's common library: settings, result files, lineage, MLflow helpers, model packaging."""
