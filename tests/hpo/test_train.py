"""The training loop on the tiny model: it learns, its metrics are right, its checkpoint loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.model_package import load_model_dir
from steps.hpo.config import TrialParams
from steps.hpo.data import load_tokenized
from steps.hpo.train import STATE_FILE, TrialTrainer, f1_macro


@pytest.fixture(scope="module")
def data(tokenized_dir):
    return load_tokenized(tokenized_dir)


def test_f1_macro_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, 300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 6, 300))
    assert f1_macro(pred, gold, 6) == pytest.approx(f1_score(gold, pred, average="macro"))


def test_training_loss_decreases_and_metrics_are_reported(data, tiny_base_model):
    torch.set_num_threads(1)
    params = TrialParams(learning_rate=2e-3, batch_size=16)
    trainer = TrialTrainer(data, params, tiny_base_model, num_epochs=3, seed=0)
    epochs = list(trainer.epochs())
    assert [m.epoch for m in epochs] == [1, 2, 3]
    assert epochs[-1].train_loss < epochs[0].train_loss
    for m in epochs:
        assert 0 <= m.val_accuracy <= 1 and 0 <= m.val_f1_macro <= 1
        assert m.samples_per_second > 0 and m.epoch_seconds > 0


def test_evaluate_matches_an_unbatched_reference(data, tiny_base_model):
    trainer = TrialTrainer(data, TrialParams(batch_size=7), tiny_base_model, num_epochs=1, seed=0)
    got = trainer.evaluate()
    split, model = data.validation, trainer.model.eval()
    losses, preds = [], []
    with torch.inference_mode():
        for i in range(len(split)):
            ids = torch.from_numpy(split.ids[split.offsets[i] : split.offsets[i + 1]].astype(np.int64))[None]
            logits = model(input_ids=ids).logits
            losses.append(torch.nn.functional.cross_entropy(logits, torch.tensor([split.labels[i]])).item())
            preds.append(int(logits.argmax()))
    preds = np.array(preds)
    assert got["val_loss"] == pytest.approx(float(np.mean(losses)), rel=1e-4)
    assert got["val_accuracy"] == pytest.approx(float((preds == split.labels).mean()))
    assert got["val_f1_macro"] == pytest.approx(f1_macro(preds, split.labels, 6))


def test_checkpoint_is_a_model_dir_and_resumes_at_the_next_epoch(data, tiny_base_model, tmp_path):
    trainer = TrialTrainer(data, TrialParams(), tiny_base_model, num_epochs=3, seed=0)
    trainer.save(tmp_path / "ckpt", epoch=2, metrics={"val_loss": 1.0})
    model, tokenizer, labels = load_model_dir(tmp_path / "ckpt")
    assert labels == data.labels and model.config.num_labels == 6
    assert (tmp_path / "ckpt" / STATE_FILE).is_file()
    resumed = TrialTrainer(data, TrialParams(), tiny_base_model, num_epochs=3, init_dir=tmp_path / "ckpt")
    assert resumed.start_epoch == 3
    assert [m.epoch for m in resumed.epochs()] == [3]
    for a, b in zip(trainer.model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
