"""MLflow pyfunc wrapper for the model directory, logged as code (models-from-code: no pickle).

`mlflow.pyfunc.load_model(uri).predict(["I love this"])` returns a DataFrame with the emotion,
its confidence and one score column per label.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class EmotionPyfunc(PythonModel):
    def load_context(self, context):
        from shared.model_package import MLFLOW_MODEL_DIR_ARTIFACT, load_model_dir, read_temperature

        model_dir = context.artifacts[MLFLOW_MODEL_DIR_ARTIFACT]
        self.model, self.tokenizer, self.labels = load_model_dir(model_dir)
        self.temperature = read_temperature(model_dir)  # calibrated confidences (1.0: none stored)

    def predict(
        self, context: PythonModelContext, model_input: list[str], params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Texts in, one row per text out. MLflow validates the input against the type hint (and
        turns a one-column DataFrame, e.g. from `mlflow models serve`, into the list)."""
        import torch

        texts = [str(t) for t in model_input]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            probs = torch.softmax(self.model(**enc).logits.float() / self.temperature, dim=-1)
        conf, idx = probs.max(dim=-1)
        out = pd.DataFrame({"emotion": [self.labels[int(i)] for i in idx], "confidence": conf.tolist()})
        for i, name in self.labels.items():
            out[f"score_{name}"] = probs[:, i].tolist()
        return out


mlflow.models.set_model(EmotionPyfunc())
