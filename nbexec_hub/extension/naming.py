"""Paths of notebooks and of their outputs: safety inside the root and output names.

Output names are reserved (in memory and by creating the file exclusively) so that two
executions never write the same file, also when they start at the same moment.
"""

from __future__ import annotations

import itertools
import os
import posixpath

from ..errors import BadRequest


def normalize_api_path(path: str, what: str) -> str:
    """A '/'-separated path relative to the root, refusing anything that could leave it."""
    if not isinstance(path, str) or not path.strip():
        raise BadRequest(f"{what} is empty")
    if "\x00" in path:
        raise BadRequest(f"{what} contains a NUL character")
    if path.startswith(("/", "\\")) or os.path.isabs(path) or (len(path) > 1 and path[1] == ":"):
        raise BadRequest(f"{what} must be relative to the server root, not absolute: {path!r}")
    parts = path.replace("\\", "/").split("/")
    if ".." in parts:
        raise BadRequest(f"{what} must stay inside the server root ('..' is not allowed): {path!r}")
    normalized = posixpath.normpath("/".join(parts))
    if normalized in ("", "."):
        raise BadRequest(f"{what} is empty")
    return normalized


def to_os_path(root_dir: str, api_path: str, what: str) -> str:
    """The OS path of an API path, refusing symlinks that lead out of the root."""
    os_path = os.path.join(root_dir, *api_path.split("/"))
    real_root = os.path.realpath(root_dir)
    real = os.path.realpath(os_path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise BadRequest(f"{what} leads outside the server root: {api_path!r}")
    return os_path


def to_api_path(root_dir: str, os_path: str) -> str:
    """The API path (relative, '/'-separated) of an OS path inside the root."""
    return os.path.relpath(os_path, root_dir).replace(os.sep, "/")


def numbered_output_name(notebook_os_path: str, number: int) -> str:
    """``<folder>/<stem>-Executed<N>.ipynb`` for a notebook."""
    folder, name = os.path.split(notebook_os_path)
    stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
    return os.path.join(folder, f"{stem}-Executed{number}.ipynb")


class OutputReservations:
    """The output files that running executions will write, so no two share one."""

    def __init__(self) -> None:
        self._reserved: set[str] = set()
        #: reserved names whose (empty) file we created ourselves
        self._placeholders: set[str] = set()

    def _claim(self, os_path: str) -> bool:
        """Create the file exclusively; False when it (or its reservation) exists."""
        key = os.path.realpath(os_path)
        if key in self._reserved or os.path.lexists(os_path):
            return False
        try:
            fd = os.open(os_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        self._reserved.add(key)
        self._placeholders.add(key)
        return True

    def reserve_numbered(self, notebook_os_path: str) -> str:
        """Reserve the free ``-Executed<N>`` name with the smallest N, and return it."""
        for number in itertools.count(1):
            candidate = numbered_output_name(notebook_os_path, number)
            if self._claim(candidate):
                return candidate
        raise AssertionError("unreachable")

    def reserve_exact(self, os_path: str, api_path: str, overwrite: bool) -> None:
        """Reserve a requested output path, refusing an existing file unless ``overwrite``."""
        folder = os.path.dirname(os_path)
        if not os.path.isdir(folder):
            raise BadRequest(f"the folder of output_path does not exist: {api_path!r}")
        if os.path.isdir(os_path):
            raise BadRequest(f"output_path is a directory: {api_path!r}")
        key = os.path.realpath(os_path)
        if key in self._reserved:
            raise BadRequest(f"output_path {api_path!r} is being written by another execution")
        if overwrite:
            self._reserved.add(key)
            return
        if not self._claim(os_path):
            raise BadRequest(
                f"output_path {api_path!r} already exists; pass overwrite=true to replace it"
            )

    def release(self, os_path: str, *, written: bool = True) -> None:
        """Forget a reservation; an unused placeholder we created is removed."""
        key = os.path.realpath(os_path)
        self._reserved.discard(key)
        if key in self._placeholders:
            self._placeholders.discard(key)
            if not written:
                try:
                    if os.path.getsize(os_path) == 0:
                        os.unlink(os_path)
                except OSError:
                    pass
