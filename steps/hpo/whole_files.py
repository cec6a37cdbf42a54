"""Ray Tune's storage filesystem (the local disk or S3), with every file it writes appearing whole.

Tune uploads its experiment state by copying the driver's staging folder into storage, and it
rewrites the staged state in place while a copy may still read it; a local copy also truncates
its destination first. A driver killed mid-copy (SIGKILL, a lost node) could thus leave an empty
or torn `experiment_state-*.json`, and a resume would start the search over. Here a local write
goes to a hidden file beside its target and replaces it when closed (an S3 upload is already all
or nothing), and an experiment state that does not parse (copied while it was rewritten) is
dropped, keeping the last complete one.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import tempfile

from pyarrow import PythonFile, fs

EXPERIMENT_STATE_PATTERN = "experiment_state-*.json"  # Tune's experiment state file names
COPY_CHUNK = 16 * 1024 * 1024


def _is_experiment_state(path: str) -> bool:
    return fnmatch.fnmatch(os.path.basename(path), EXPERIMENT_STATE_PATTERN)


def _parses(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


class _ReplaceOnClose:
    """A local binary file written beside `path` that becomes `path` when closed."""

    def __init__(self, path: str):
        self.path = path
        folder, name = os.path.split(path)
        fd, self.temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder or ".")
        os.chmod(self.temp, 0o644)  # as an ordinary file, not mkstemp's owner-only one
        self.file = os.fdopen(fd, "wb")

    def write(self, data) -> int:
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    @property
    def closed(self) -> bool:
        return self.file.closed

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.close()
        os.replace(self.temp, self.path)


class _WrittenIfItParses(io.BytesIO):
    """An experiment state held in memory, written whole when closed if it is complete JSON."""

    def __init__(self, handler: WholeFilesHandler, path: str):
        super().__init__()
        self.handler, self.path = handler, path

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()
            if _parses(data):
                with self.handler.whole_output_stream(self.path) as out:
                    out.write(data)
        super().close()


class WholeFilesHandler(fs.FileSystemHandler):
    """`inner` (S3; by default the local disk), except for how files are written (see above)."""

    def __init__(self, inner: fs.FileSystem | None = None):
        self.local = inner is None
        self.inner = fs.LocalFileSystem() if inner is None else inner

    def __eq__(self, other) -> bool:
        return isinstance(other, WholeFilesHandler) and self.inner.equals(other.inner)

    def __ne__(self, other) -> bool:
        return not self == other

    def __reduce__(self):  # Tune pickles its storage filesystem into the trials and tuner.pkl
        return WholeFilesHandler, (None if self.local else self.inner,)

    def get_type_name(self) -> str:
        return f"{self.inner.type_name}-whole-files"

    def normalize_path(self, path):
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path):
        self.inner.delete_file(path)

    def move(self, src, dest):
        self.inner.move(src, dest)

    def copy_file(self, src, dest):
        if not self.local:  # a server-side copy: all or nothing
            self.inner.copy_file(src, dest)
            return
        with self.inner.open_input_stream(src) as source, self.open_output_stream(dest, None) as target:
            while chunk := source.read(COPY_CHUNK):
                target.write(chunk)

    def open_input_stream(self, path):
        return self.inner.open_input_stream(path)

    def open_input_file(self, path):
        return self.inner.open_input_file(path)

    def open_output_stream(self, path, metadata):
        if _is_experiment_state(path):
            return PythonFile(_WrittenIfItParses(self, path), mode="w")
        return self.whole_output_stream(path, metadata)

    def whole_output_stream(self, path, metadata=None):
        if self.local:
            return PythonFile(_ReplaceOnClose(path), mode="w")
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.inner.open_append_stream(path)


def whole_files_filesystem(inner: fs.FileSystem | None = None) -> fs.PyFileSystem:
    """`inner` (by default the local disk) as Tune's storage filesystem."""
    return fs.PyFileSystem(WholeFilesHandler(inner))
