"""Calibrate the search's best model: one temperature fitted on the tune split, stored with it.

Runs on the driver after the search, on the best trial's checkpoint, before it is logged to
MLflow: the temperature lands in the model directory as `temperature.json`
(`shared.model_package.write_temperature`), which every consumer applies (register's
evaluation, the pyfunc model, the serving backends). The tune split is the data the search
selected on; the validation split stays untouched for register, which reports the calibration
error before and after on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from shared.calibration import TemperatureFit, fit_temperature
from shared.model_package import write_temperature
from steps.hpo.data import TokenizedData, TokenizedSplit, bucketed_batches, collate

log = logging.getLogger(__name__)

FITTED_ON = "tune"


def split_logits(
    model_dir: Path,
    split: TokenizedSplit,
    pad_token_id: int,
    *,
    max_length: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """float32 logits of every row of `split` (in row order) from the model in `model_dir`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from steps.hpo.train import pick_device

    device = pick_device()
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True, dtype=torch.float32
    ).to(device)
    model.eval()
    out = np.zeros((len(split), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for index in bucketed_batches(split.lengths, batch_size, None):
            ids, mask, _ = collate(split, index, pad_token_id, max_length)
            logits = model(
                input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device)
            ).logits
            out[index] = logits.float().cpu().numpy()
    return out


def calibrate_model_dir(
    model_dir: Path, data: TokenizedData, *, max_length: int | None = None
) -> TemperatureFit:
    """Fit the temperature on the tune split and write `temperature.json` into `model_dir`."""
    logits = split_logits(model_dir, data.tune, data.pad_token_id, max_length=max_length)
    fit = fit_temperature(logits, data.tune.labels)
    details = {k: v for k, v in fit.as_dict().items() if k != "temperature"}
    write_temperature(model_dir, fit.temperature, fitted_on=FITTED_ON, **details)
    log.info(
        "temperature %.4f (fitted %.4f, %s) on %d tune rows: ECE %.4f -> %.4f, NLL %.4f -> %.4f",
        fit.temperature,
        fit.fitted_temperature,
        "applied" if fit.applied else "kept 1.0: fitting did not lower both ECE and NLL",
        fit.rows,
        fit.ece_before,
        fit.ece_after,
        fit.nll_before,
        fit.nll_after,
    )
    return fit
