"""The dataset format, and the command that publishes a dataset version into a DVC data registry.

A *dataset directory* holds one parquet file per split (`train.parquet`, `validation.parquet`,
`test.parquet` if the version has one; columns `text` string and `label` integer) and a
`metadata.json` whose `label_map` maps label ids to names (`{"0": "sadness", ...}`). The
functions here validate that format for every consumer: the registry refuses to publish a bad
dataset, dvc-fetch refuses to hand one on, tokenize refuses to read one.

The *data registry* is a git repository in which each dataset version is a git tag
(`emotion-v1.0.0`) on a commit whose `data/emotion.dvc` records the DVC hash of the dataset
directory; the files themselves live in a DVC remote (a local directory by default, S3 when a
`s3://` URL is given). Building is idempotent, and a new version adds a commit and a tag on
`main` without touching the tags before it:

    python -m shared.data_registry build --source ../shared/data/emotion --registry .local/data-registry
    python -m shared.data_registry build --source my-relabelled-copy --registry .local/data-registry \\
        --version emotion-v1.1.0
    python -m shared.data_registry list --registry .local/data-registry

All git and DVC work goes through the `git` and `dvc` commands (the DVC that is installed next
to this interpreter), with a fallback git identity so it works where none is configured (CI).
"""

from shared.data_registry.atomic import atomic_replace_dir, sibling_tmp_dir
from shared.data_registry.build import (
    DEFAULT_PATH,
    REMOTE_NAME,
    BuildInput,
    BuildResult,
    build,
    default_version,
    versions,
)
from shared.data_registry.format import (
    EXTRA_FILES,
    MAX_ROWS_SHOWN,
    METADATA_FILE,
    REQUIRED_SPLITS,
    SplitStats,
    check_metadata_matches,
    read_label_map,
    read_metadata,
    split_files,
    validate_dataset,
    validate_split,
)
from shared.data_registry.gitdvc import FALLBACK_IDENTITY, dvc, git, list_tags, recorded_hash, tag_commit
from shared.data_registry.hashing import dvc_dir_hash, file_md5, file_sha256

__all__ = [
    "DEFAULT_PATH",
    "EXTRA_FILES",
    "FALLBACK_IDENTITY",
    "MAX_ROWS_SHOWN",
    "METADATA_FILE",
    "REMOTE_NAME",
    "REQUIRED_SPLITS",
    "BuildInput",
    "BuildResult",
    "SplitStats",
    "atomic_replace_dir",
    "build",
    "check_metadata_matches",
    "default_version",
    "dvc",
    "dvc_dir_hash",
    "file_md5",
    "file_sha256",
    "git",
    "list_tags",
    "read_label_map",
    "read_metadata",
    "recorded_hash",
    "sibling_tmp_dir",
    "split_files",
    "tag_commit",
    "validate_dataset",
    "validate_split",
    "versions",
]
