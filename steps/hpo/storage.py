"""Where a search's Ray Tune experiment lives: a local folder or the artifact store (S3).

A search that runs for a workflow (`--workflow-uid`) keeps its experiment in `<storage>/<uid>`,
so a retried hpo step (a new pod, a new process, after an eviction, a node loss or a SIGKILL)
finds it again and continues it. On a cluster `<storage>` is an `s3://bucket/prefix` URL on the
artifact store: nothing the search needs to continue lives inside the pod.

The S3 endpoint is the platform's (`MLFLOW_S3_ENDPOINT_URL`, e.g. MinIO), credentials the
standard `AWS_*` variables; Tune gets a pyarrow filesystem built from them, wrapped by
`whole_files` (as is the local disk) so that a driver killed mid-save leaves no torn file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.environment import PlatformEnvironment, ProductEnvironment
from shared.object_store import is_s3_uri, parse_s3_uri
from shared.settings import Settings
from steps.hpo.whole_files import whole_files_filesystem

STORAGE_ENV = "EMOTION_HPO_STORAGE"


def storage_root(storage_dir: str | None, settings: Settings) -> str:
    """`storage_dir`, else `$EMOTION_HPO_STORAGE`, else `<local dir>/hpo` (absolute)."""
    root = storage_dir or ProductEnvironment().hpo_storage or str(Path(settings.local_dir) / "hpo")
    if is_s3_uri(root):
        return root.rstrip("/")
    return str(Path(root).resolve())


def _s3_filesystem(settings: Settings):
    from pyarrow import fs

    kwargs: dict[str, Any] = {}
    env = PlatformEnvironment()
    endpoint = settings.mlflow_s3_endpoint_url or env.aws_endpoint_url
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
    # No explicit keys: the AWS SDK reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment.
    # Ray Tune pickles this filesystem into the experiment it stores (tuner.pkl, on S3 itself), and
    # a pickled S3FileSystem carries any keys it was given in clear text.
    kwargs["region"] = env.aws_default_region or env.aws_region or "us-east-1"
    return fs.S3FileSystem(**kwargs)


@dataclass(frozen=True)
class SearchStorage:
    """The storage root as Tune wants it: a path (bucket/prefix for S3) plus its filesystem."""

    uri: str  # as the user gave it: /abs/folder or s3://bucket/prefix
    path: str  # what Tune's storage_path gets: the folder, or bucket/prefix
    filesystem: Any  # the pyarrow filesystem Tune reads and writes `path` with
    local: bool

    @classmethod
    def open(cls, storage_dir: str | None, settings: Settings) -> SearchStorage:
        root = storage_root(storage_dir, settings)
        if is_s3_uri(root):
            loc = parse_s3_uri(root)
            path = f"{loc.bucket}/{loc.prefix}" if loc.prefix else loc.bucket
            s3 = whole_files_filesystem(_s3_filesystem(settings))
            return cls(uri=root, path=path, filesystem=s3, local=False)
        return cls(uri=root, path=root, filesystem=whole_files_filesystem(), local=True)

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def experiment_uri(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def read_text(self, rel: str) -> str | None:
        """The text of `<root>/<rel>`, or None when it does not exist."""
        if self.local:
            path = Path(self.join(rel))
            return path.read_text() if path.is_file() else None
        from pyarrow import fs

        info = self.filesystem.get_file_info(self.join(rel))
        if info.type != fs.FileType.File:
            return None
        with self.filesystem.open_input_stream(self.join(rel)) as stream:
            return stream.read().decode()

    def write_text(self, rel: str, text: str) -> None:
        """Write `<root>/<rel>` whole (a local file is replaced atomically; an S3 put is atomic)."""
        if self.local:
            from shared.results import atomic_write_text

            atomic_write_text(Path(self.join(rel)), text)
            return
        with self.filesystem.open_output_stream(self.join(rel)) as stream:
            stream.write(text.encode())

    def can_restore(self, name: str) -> bool:
        from ray import tune

        try:
            return tune.Tuner.can_restore(self.join(name), storage_filesystem=self.filesystem)
        except Exception:  # a missing bucket prefix or folder: nothing to restore
            return False
