"""hpo step: Ray Tune + ASHA search over fine-tuning hyperparameters, recorded in MLflow."""
