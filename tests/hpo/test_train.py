"""The training loop on the tiny model: it learns, its metrics are right, its checkpoint loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.model_package import load_model_dir
from steps.hpo.config import TrialParams
from steps.hpo.data import load_tokenized
from steps.hpo.train import OPTIMIZER_FILE, STATE_FILE, TrialTrainer, f1_macro


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
    split, model = data.tune, trainer.model.eval()
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


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.allclose(x, y, rtol=0, atol=1e-6)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_resumed_trial_continues_exactly_as_if_never_stopped(data, tiny_base_model, tmp_path):
    """Optimizer moments, the LR schedule and dropout's RNG all carry over a checkpoint."""
    torch.set_num_threads(1)
    params = TrialParams(learning_rate=3e-3, batch_size=16, weight_decay=0.05, warmup_ratio=0.3, dropout=0.2)
    straight = TrialTrainer(data, params, tiny_base_model, num_epochs=2, seed=4)
    expected = list(straight.epochs())[1]

    first = TrialTrainer(data, params, tiny_base_model, num_epochs=2, seed=4)
    epoch1 = next(first.epochs())
    ckpt = first.save(tmp_path / "ckpt", epoch=1, metrics=epoch1.as_dict())
    assert (ckpt / OPTIMIZER_FILE).is_file()
    resumed = TrialTrainer(data, params, tiny_base_model, num_epochs=2, seed=4, init_dir=ckpt)
    (got,) = list(resumed.epochs())
    assert got.epoch == 2
    assert got.train_loss == pytest.approx(expected.train_loss, rel=1e-5)
    assert got.val_loss == pytest.approx(expected.val_loss, rel=1e-5)
    assert _same_weights(resumed.model, straight.model)

    # Without the optimizer state the same resume drifts: the state above is what makes it exact.
    (ckpt / OPTIMIZER_FILE).unlink()
    fresh_moments = TrialTrainer(data, params, tiny_base_model, num_epochs=2, seed=4, init_dir=ckpt)
    list(fresh_moments.epochs())
    assert not _same_weights(fresh_moments.model, straight.model)


def test_half_precision_base_model_trains_with_fp32_master_weights(data, tiny_base_model, tmp_path):
    import shutil

    from transformers import AutoModel

    half = shutil.copytree(tiny_base_model, tmp_path / "half")
    AutoModel.from_pretrained(tiny_base_model).half().save_pretrained(half)  # stored as fp16
    trainer = TrialTrainer(data, TrialParams(batch_size=16), half, num_epochs=1, seed=0)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
