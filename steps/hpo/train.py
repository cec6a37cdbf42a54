"""One trial's training loop, in plain PyTorch (no Ray, no MLflow: those wrap it).

Why not the HF Trainer: on a fast GPU a small encoder is launch/CPU bound, so the loop keeps
the GPU fed: length-bucketed batches padded to the batch maximum, bf16 autocast, fused AdamW,
pinned host memory with non-blocking copies, and no host sync in the hot loop (losses are
summed on the device and read once per epoch). On CPU it runs one torch thread pool sized to
the trial's CPUs, so packed trials do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.model_package import save_model_dir
from steps.hpo.config import TrialParams
from steps.hpo.data import TokenizedData, TokenizedSplit, bucketed_batches, collate

STATE_FILE = "trial_state.json"
# Adam moments and step counts of a checkpoint, so a resumed trial continues exactly. Tensors
# only (safetensors, no pickle); not part of the packaged model (see MODEL_DIR_EXCLUDES).
OPTIMIZER_FILE = "optimizer.safetensors"
MODEL_DIR_EXCLUDES = (STATE_FILE, OPTIMIZER_FILE)
_DROPOUT_ATTRS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "classifier_dropout")


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_f1_macro: float
    epoch_seconds: float
    samples_per_second: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def f1_macro(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Macro F1 over classes that occur in labels or predictions (sklearn's definition)."""
    cm = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def pick_device() -> torch.device:
    """CUDA when the trial was given a GPU (Ray sets CUDA_VISIBLE_DEVICES), else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _linear_schedule(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


class TrialTrainer:
    """Fine-tunes a sequence classifier on `data` with `params` for up to `num_epochs` epochs."""

    def __init__(
        self,
        data: TokenizedData,
        params: TrialParams,
        model_path: str | Path,
        num_epochs: int,
        *,
        seed: int = 0,
        device: torch.device | None = None,
        init_dir: Path | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        self.data, self.params, self.num_epochs, self.seed = data, params, num_epochs, seed
        self.device = device or pick_device()
        self.cuda = self.device.type == "cuda"
        self.start_epoch = 1
        source = init_dir or model_path
        config = AutoConfig.from_pretrained(
            source,
            num_labels=len(data.labels),
            id2label=dict(data.labels),
            label2id={v: k for k, v in data.labels.items()},
        )
        if params.dropout is not None:
            for attr in _DROPOUT_ATTRS:
                if hasattr(config, attr):
                    setattr(config, attr, params.dropout)
        torch.manual_seed(seed)
        # fp32 master weights whatever the checkpoint's storage dtype (transformers 5 loads a
        # half-precision checkpoint as half by default); bf16 is only used inside autocast.
        self.model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, dtype=torch.float32
        ).to(self.device)
        if init_dir is not None:
            state = json.loads((Path(init_dir) / STATE_FILE).read_text())
            self.start_epoch = int(state["epoch"]) + 1

        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": params.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=params.learning_rate,
            fused=self.cuda or None,
        )
        steps_per_epoch = math.ceil(len(data.train) / params.batch_size)
        total = steps_per_epoch * num_epochs
        offset = steps_per_epoch * (self.start_epoch - 1)  # resuming: continue the schedule
        factor = _linear_schedule(int(params.warmup_ratio * total), total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: factor(s + offset))
        if init_dir is not None and (Path(init_dir) / OPTIMIZER_FILE).is_file():
            self._load_optimizer(Path(init_dir) / OPTIMIZER_FILE)

    def _optimizer_tensors(self) -> dict[str, torch.Tensor]:
        """The optimizer's per-parameter state as flat `<param index>.<name>` tensors."""
        tensors = {}
        for index, state in self.optimizer.state_dict()["state"].items():
            for name, value in state.items():
                value = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"{index}.{name}"] = value.detach().to("cpu").contiguous()
        return tensors

    def _load_optimizer(self, path: Path) -> None:
        from safetensors.torch import load_file

        saved = self.optimizer.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in load_file(str(path)).items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        # Current param groups (their lr already follows the resumed schedule); saved moments.
        self.optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})

    def _autocast(self):
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, arrays: tuple[np.ndarray, ...]) -> list[torch.Tensor]:
        tensors = [torch.from_numpy(a) for a in arrays]
        if self.cuda:
            return [t.pin_memory().to(self.device, non_blocking=True) for t in tensors]
        return tensors

    def _batches(
        self, split: TokenizedSplit, rng: np.random.Generator | None
    ) -> Iterator[list[torch.Tensor]]:
        for index in bucketed_batches(split.lengths, self.params.batch_size, rng):
            yield self._to_device(collate(split, index, self.data.pad_token_id, self.params.max_length))

    def train_epoch(self, epoch: int) -> tuple[float, int]:
        """One pass over the training data; returns (mean loss, samples seen)."""
        self.model.train()
        rng = np.random.default_rng([self.seed, epoch])
        # Dropout draws from torch's RNG: seeded per epoch, so a resumed epoch replays exactly.
        torch.manual_seed(int(rng.integers(2**63 - 1)))
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        for ids, mask, labels in self._batches(self.data.train, rng):
            with self._autocast():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.params.label_smoothing)
            loss.backward()
            if self.params.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.params.grad_clip, foreach=True)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * labels.shape[0]
            seen += int(labels.shape[0])
        return float(loss_sum.item()) / max(1, seen), seen  # the epoch's one host sync

    @torch.inference_mode()
    def evaluate(self, split: TokenizedSplit | None = None) -> dict[str, float]:
        """Loss, accuracy and macro-F1 on `split` (default: the tune split, the search's selection
        split; the metrics keep their `val_` names, which ASHA and MLflow know them by)."""
        split = split or self.data.tune
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        preds, golds = [], []
        for ids, mask, labels in self._batches(split, None):
            with self._autocast():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            preds.append(logits.argmax(dim=-1))
            golds.append(labels)
        pred = torch.cat(preds).cpu().numpy()
        gold = torch.cat(golds).cpu().numpy()
        return {
            "val_loss": float(loss_sum.item()) / len(gold),
            "val_accuracy": float((pred == gold).mean()),
            "val_f1_macro": f1_macro(pred, gold, len(self.data.labels)),
        }

    def epochs(self) -> Iterator[EpochMetrics]:
        """Train epoch by epoch from `start_epoch`, yielding each epoch's metrics."""
        for epoch in range(self.start_epoch, self.num_epochs + 1):
            start = time.perf_counter()
            train_loss, seen = self.train_epoch(epoch)
            if self.cuda:
                torch.cuda.synchronize()
            train_seconds = time.perf_counter() - start
            val = self.evaluate()
            yield EpochMetrics(
                epoch=epoch,
                train_loss=train_loss,
                epoch_seconds=time.perf_counter() - start,
                samples_per_second=seen / max(train_seconds, 1e-9),
                **val,
            )

    def save(self, out_dir: Path, epoch: int, metrics: dict[str, float] | None = None) -> Path:
        """Save the model in the project's model-dir format, plus the epoch it was taken at
        and the optimizer state to resume from."""
        from safetensors.torch import save_file
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.data.tokenizer_dir)
        save_model_dir(self.model, tokenizer, self.data.labels, Path(out_dir))
        save_file(self._optimizer_tensors(), str(Path(out_dir) / OPTIMIZER_FILE))
        state = {"epoch": epoch, "metrics": metrics or {}, "params": self.params.model_dump()}
        (Path(out_dir) / STATE_FILE).write_text(json.dumps(state, indent=2))
        return Path(out_dir)
