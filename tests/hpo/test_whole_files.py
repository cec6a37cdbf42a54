"""The search's local storage filesystem: a writer killed mid-file, or a copy of an experiment
state read while Tune rewrote it, never replaces the last complete file (fast)."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle

from pyarrow import fs

from shared.settings import Settings
from steps.hpo.storage import SearchStorage
from steps.hpo.whole_files import whole_files_filesystem

STATE = "experiment_state-2026-12-05_03-27-58.json"


def _killed_mid_write(paths: list[str]) -> None:
    filesystem = whole_files_filesystem()
    for path in paths:
        stream = filesystem.open_output_stream(path)
        stream.write(b'{"trial_data": [')
        stream.flush()
    os._exit(9)  # as SIGKILL: no close, no cleanup


def test_a_writer_killed_mid_file_leaves_the_previous_files(tmp_path):
    state, weights = tmp_path / STATE, tmp_path / "checkpoint_000001" / "model.safetensors"
    weights.parent.mkdir()
    state.write_text('{"trial_data": []}')
    weights.write_bytes(b"weights")
    writer = multiprocessing.get_context("spawn").Process(
        target=_killed_mid_write, args=([str(state), str(weights)],)
    )
    writer.start()
    writer.join(timeout=60)
    assert writer.exitcode == 9
    assert json.loads(state.read_text()) == {"trial_data": []}
    assert weights.read_bytes() == b"weights"
    assert [p.name for p in weights.parent.iterdir() if p.name != weights.name][0].startswith(".")


def test_a_torn_experiment_state_is_dropped_and_other_files_are_copied_whole(tmp_path):
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    (staging / "trial_0").mkdir(parents=True)
    (staging / STATE).write_text('{"done": 1}')
    (staging / "trial_0" / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    filesystem = whole_files_filesystem()
    fs.copy_files(str(staging), str(storage), destination_filesystem=filesystem)
    (staging / STATE).write_text("")  # what a copy reads while Tune truncates and rewrites it
    fs.copy_files(str(staging), str(storage), destination_filesystem=filesystem)
    assert json.loads((storage / STATE).read_text()) == {"done": 1}
    assert (storage / "trial_0" / "result.json").read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert sorted(p.name for p in storage.iterdir()) == [STATE, "trial_0"], "no partial file left"
    assert pickle.loads(pickle.dumps(filesystem)) == filesystem  # Tune ships it to the trials


def test_a_local_search_storage_gives_tune_the_whole_files_filesystem(tmp_path):
    storage = SearchStorage.open(str(tmp_path / "hpo"), Settings())
    assert storage.local and storage.filesystem == whole_files_filesystem()
    storage.write_text("search.json", "{}")
    assert storage.read_text("search.json") == "{}"
