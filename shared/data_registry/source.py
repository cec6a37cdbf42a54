"""Where the emotion dataset comes from: a folder, else the Hugging Face Hub, else one clear error.

`resolve_source()` is what `make demo` (through `python -m shared.data_registry build` without
`--source`) and the tests that need the full dataset use, in this order:

1. `EMOTION_DATASET_DIR`, when set: that folder, and nothing else (an error if it is not one).
2. The team folder beside the repository, `../shared/data/emotion`, when present.
3. `dair-ai/emotion` (config `split`) at a pinned revision, downloaded with
   `huggingface_hub.hf_hub_download`, so `HF_ENDPOINT` (a mirror), `HF_HUB_OFFLINE` and the HF cache
   (`HF_HOME`, `HF_HUB_CACHE`) work as everywhere else in the Hugging Face tools. Each split is
   verified (columns, label names, row count, class counts and a digest of its rows, recorded
   below for that revision) and laid out as a dataset directory under
   `<EMOTION_LOCAL_DIR>/datasets/`, reused on the next run without asking the Hub again.
4. Otherwise one `StepError` line naming both ways out: `EMOTION_DATASET_DIR` or the network.

The expected figures are those of the team copy, which holds the same rows as the Hub's `split`
config (CARER's original split files; see its README). The row digest does not depend on how a
parquet file was written, so a Hub download and the team copy are checked by the same numbers. The
Hub's own file checksums and the pinned revision were *not* checked against the live Hub (it was
not reachable where this was written): `HubSplit.file_sha256` stays `None` until someone records
them, and `EMOTION_HF_REVISION` moves the pin if it turns out wrong (the row checks still apply).

The test split is not laid out: the team copy keeps it back as a hidden evaluation set, and the
Hub source does the same, so both sources give the same dataset version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.data_registry.atomic import atomic_replace_dir, sibling_tmp_dir
from shared.data_registry.format import METADATA_FILE, read_metadata
from shared.data_registry.hashing import file_sha256
from shared.environment import PlatformEnvironment, ProductEnvironment
from shared.errors import StepError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEAM_DATASET_DIR = REPO_ROOT.parent / "shared" / "data" / "emotion"
DATASET_DIR_ENV = "EMOTION_DATASET_DIR"
REVISION_ENV = "EMOTION_HF_REVISION"

HUB_REPO = "dair-ai/emotion"
# The commit of dair-ai/emotion whose `split/` parquet files we expect (taken from public code that
# pins it; not checked against the live Hub, see the module docstring).
HUB_REVISION = "cab853a1dbdf4c42c2b3ef2173804746df8825fe"
LABEL_NAMES = ("sadness", "joy", "love", "anger", "fear", "surprise")


@dataclass(frozen=True)
class HubSplit:
    """What one split of the pinned revision must hold."""

    file: str  # path in the Hub repository
    rows: int
    class_counts: tuple[int, ...]  # rows per label id, in LABEL_NAMES order
    content_sha256: str  # `rows_sha256` of the split: label and text of every row, in order
    file_sha256: str | None = None  # the Hub file's own sha256, where recorded


HUB_SPLITS: dict[str, HubSplit] = {
    "train": HubSplit(
        file="split/train-00000-of-00001.parquet",
        rows=16000,
        class_counts=(4666, 5362, 1304, 2159, 1937, 572),
        content_sha256="3dbdcc9aa4c4d5fbd04b862c7e9df4d5a1831e618e594bc758d01b2131970219",
    ),
    "validation": HubSplit(
        file="split/validation-00000-of-00001.parquet",
        rows=2000,
        class_counts=(550, 704, 178, 275, 212, 81),
        content_sha256="0275370f0c5700f36d45969a5d720ad704c8c6e8c196213f39a48091214dbe15",
    ),
}


def rows_sha256(texts: list[str], labels: list[int]) -> str:
    """A digest of a split's rows (`[label, text]` per line, in order), whatever the file's encoding."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update((json.dumps([int(label), text], ensure_ascii=False) + "\n").encode())
    return digest.hexdigest()


def hub_revision() -> str:
    return ProductEnvironment().hf_revision or HUB_REVISION


def default_hub_dir(revision: str | None = None) -> Path:
    from shared.settings import Settings

    return Path(Settings().local_dir) / "datasets" / f"emotion-hub-{(revision or hub_revision())[:12]}"


def _no_dataset(reason: str, revision: str) -> StepError:
    return StepError(
        f"no emotion dataset: {DATASET_DIR_ENV} is not set, {TEAM_DATASET_DIR} is absent and "
        f"{HUB_REPO}@{revision[:12]} could not be fetched from the Hugging Face Hub ({reason}); "
        f"either set {DATASET_DIR_ENV} to a dataset folder (<split>.parquet + metadata.json), or allow "
        "network access to the Hub (unset HF_HUB_OFFLINE; HF_ENDPOINT may name a mirror)"
    )


def hub_unreachable(endpoint: str, timeout_s: float = 10.0) -> str | None:
    """Why the Hub endpoint cannot be reached (name not resolved, connection refused...), else None.

    One TCP connection, before any download: huggingface_hub would retry an unreachable host five
    times with back-off (about 25 s of warnings) before failing. Behind a proxy the proxy resolves
    the name, so no probe is made.
    """
    env = PlatformEnvironment()  # any case of each name, as the HTTP clients read them
    if env.https_proxy or env.http_proxy or env.all_proxy:
        return None
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc.__class__.__name__}"
    return None


def verify_hub_split(path: Path, split: str, expected: HubSplit) -> Any:
    """Check one downloaded split against what the pinned revision holds; return it as a table."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    where = f"{HUB_REPO} {expected.file}"
    if expected.file_sha256 and (actual := file_sha256(path)) != expected.file_sha256:
        raise StepError(f"{where}: sha256 {actual} differs from the recorded {expected.file_sha256}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise StepError(f"{where} is not a readable parquet file ({exc})") from None
    missing = {"text", "label"} - set(table.column_names)
    if missing:
        raise StepError(f"{where}: column(s) {sorted(missing)} missing (columns: {table.column_names})")
    hf_meta = (table.schema.metadata or {}).get(b"huggingface")
    if hf_meta:  # the Hub's files describe their ClassLabel names; they must be ours, in order
        features = (json.loads(hf_meta).get("info") or {}).get("features") or {}
        names = (features.get("label") or {}).get("names")
        if names is not None and tuple(names) != LABEL_NAMES:
            raise StepError(f"{where}: label names {names} differ from {list(LABEL_NAMES)}")
    texts = table.column("text").cast(pa.string()).to_pylist()
    labels = table.column("label").cast(pa.int64()).to_pylist()
    if len(texts) != expected.rows:
        raise StepError(f"{where}: {len(texts)} rows, expected {expected.rows} for split {split!r}")
    counts = pc.value_counts(pa.array(labels)).to_pylist()
    found = {int(c["values"]): int(c["counts"]) for c in counts}
    want = dict(enumerate(expected.class_counts))
    if found != want:
        raise StepError(f"{where}: rows per label id {dict(sorted(found.items()))}, expected {want}")
    digest = rows_sha256(texts, labels)
    if digest != expected.content_sha256:
        raise StepError(f"{where}: row digest {digest} differs from the recorded {expected.content_sha256}")
    return pa.table({"text": pa.array(texts, pa.string()), "label": pa.array(labels, pa.int64())})


def _metadata(revision: str, written: dict[str, Path], hub_files: dict[str, Path]) -> dict[str, Any]:
    splits = {}
    for split, path in written.items():
        spec = HUB_SPLITS[split]
        splits[split] = {
            "rows": spec.rows,
            "sha256": file_sha256(path),
            "class_counts": dict(zip(LABEL_NAMES, spec.class_counts, strict=True)),
            "rows_sha256": spec.content_sha256,
            "hub_file": spec.file,
            "hub_file_sha256": file_sha256(hub_files[split]),
        }
    return {
        "name": "emotion",
        "version": "1.0.0",
        "label_map": {str(i): name for i, name in enumerate(LABEL_NAMES)},
        "columns": {"text": "string", "label": "int64"},
        "splits": splits,
        "source": f"Hugging Face Hub dataset {HUB_REPO} (config split) at revision {revision}",
        "hub": {"repo": HUB_REPO, "revision": revision},
        "citation": "Saravia et al., CARER, EMNLP 2018",
        "notes": "The test split is intentionally not included; it is kept back as a hidden evaluation set.",
    }


def _laid_out(out_dir: Path, revision: str) -> bool:
    """Whether `out_dir` already holds this revision, laid out and intact (no Hub call needed)."""
    try:
        meta = read_metadata(out_dir)
    except StepError:
        return False
    if (meta.get("hub") or {}).get("revision") != revision:
        return False
    if set(meta.get("splits") or {}) != set(HUB_SPLITS):
        return False
    return all(
        (out_dir / f"{s}.parquet").is_file() and file_sha256(out_dir / f"{s}.parquet") == info.get("sha256")
        for s, info in meta["splits"].items()
    )


def download_from_hub(
    out_dir: Path | None = None,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Fetch the pinned splits from the Hub (or the HF cache), verify them, lay them out in `out_dir`."""
    import pyarrow.parquet as pq

    revision = revision or hub_revision()
    out_dir = Path(out_dir or default_hub_dir(revision))
    if _laid_out(out_dir, revision):
        log.info("using %s (%s@%s, laid out before)", out_dir, HUB_REPO, revision[:12])
        return out_dir
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - a dependency of transformers
        raise StepError(f"huggingface_hub is not installed ({exc}); pip install the project") from None

    from huggingface_hub import constants as hf_constants

    offline = hf_constants.is_offline_mode()  # HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), as read at import
    endpoint = endpoint or PlatformEnvironment().hf_endpoint or None
    if not offline and (reason := hub_unreachable(endpoint or hf_constants.ENDPOINT)):
        raise _no_dataset(f"Hub unreachable: {reason}", revision)
    hub_files: dict[str, Path] = {}
    for split, spec in HUB_SPLITS.items():
        try:
            hub_files[split] = Path(
                hf_hub_download(
                    HUB_REPO,
                    spec.file,
                    repo_type="dataset",
                    revision=revision,
                    endpoint=endpoint,
                    cache_dir=str(cache_dir) if cache_dir else None,
                    local_files_only=offline,
                )
            )
        except LocalEntryNotFoundError:
            reason = "HF_HUB_OFFLINE is set and the HF cache lacks it" if offline else "Hub unreachable"
            raise _no_dataset(reason, revision) from None
        except (HfHubHTTPError, OSError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise StepError(f"could not download {HUB_REPO}@{revision[:12]} {spec.file}: {detail}") from None
    tables = {split: verify_hub_split(path, split, HUB_SPLITS[split]) for split, path in hub_files.items()}
    with sibling_tmp_dir(out_dir) as tmp:
        written = {}
        for split, table in tables.items():
            written[split] = tmp / f"{split}.parquet"
            pq.write_table(table, written[split])
        meta = _metadata(revision, written, hub_files)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        atomic_replace_dir(tmp, out_dir)
    log.info("laid out %s@%s in %s (verified)", HUB_REPO, revision[:12], out_dir)
    return out_dir


def local_source() -> Path | None:
    """The dataset folder from `EMOTION_DATASET_DIR` or the team folder, without any download.

    An `EMOTION_DATASET_DIR` that is not a folder is an error (a typo must not fall back silently).
    """
    explicit = (ProductEnvironment().dataset_dir or "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise StepError(f"dataset source {explicit} ({DATASET_DIR_ENV}) is not a directory")
        return path
    return TEAM_DATASET_DIR if TEAM_DATASET_DIR.is_dir() else None


def resolve_source(*, download: bool = True, out_dir: Path | None = None) -> Path:
    """The emotion dataset directory: a folder, else the Hub (when `download`), else a StepError."""
    found = local_source()
    if found is not None:
        return found
    revision = hub_revision()
    target = Path(out_dir or default_hub_dir(revision))
    if _laid_out(target, revision):
        return target
    if not download:
        raise _no_dataset("not downloaded here", revision)
    return download_from_hub(target, revision=revision)
