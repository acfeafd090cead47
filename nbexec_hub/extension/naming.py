"""Paths of notebooks and of their outputs: safety inside the root and output names.

Output names are reserved (in memory and by creating the file exclusively) so that two
executions never write the same file, also when they start at the same moment.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import posixpath
import uuid

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


def refuse_hidden(api_path: str, what: str, *, allow_hidden: bool) -> None:
    """Refuse a path with a hidden part (a name starting with '.') unless the server
    shows hidden files (``ContentsManager.allow_hidden``): those hold configuration
    (``.jupyter``, ``.ipython``, ``.ssh``) that no execution should write into."""
    if allow_hidden:
        return
    hidden = [part for part in api_path.split("/") if part.startswith(".")]
    if hidden:
        raise BadRequest(
            f"{what} must not be hidden ({hidden[0]!r} starts with '.'), as the server does "
            f"not allow hidden files (ContentsManager.allow_hidden): {api_path!r}"
        )


def check_output_path(api_path: str, *, allow_hidden: bool) -> None:
    """A requested output path must be a visible notebook file (``.ipynb``)."""
    refuse_hidden(api_path, "output_path", allow_hidden=allow_hidden)
    if not api_path.endswith(".ipynb"):
        raise BadRequest(f"output_path must name a notebook, ending in .ipynb: {api_path!r}")


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


def _numbered_prefix(notebook_os_path: str) -> str:
    """``<folder>/<stem>-Executed``: a numbered output's name up to its N."""
    folder, name = os.path.split(notebook_os_path)
    stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
    return os.path.join(folder, f"{stem}-Executed")


def numbered_output_name(notebook_os_path: str, number: int) -> str:
    """``<folder>/<stem>-Executed<N>.ipynb`` for a notebook."""
    return f"{_numbered_prefix(notebook_os_path)}{number}.ipynb"


def _numbers_taken(notebook_os_path: str) -> set[int]:
    """The N of every ``<stem>-Executed<N>.ipynb`` beside a notebook."""
    folder, prefix = os.path.split(_numbered_prefix(notebook_os_path))
    suffix = ".ipynb"
    taken: set[int] = set()
    try:
        entries = os.scandir(folder)
    except PermissionError:  # a folder one may write but not list: probe name by name
        return taken
    with entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
                continue
            number = entry.name[len(prefix): -len(suffix)]
            if number.isascii() and number.isdigit() and str(int(number)) == number:
                taken.add(int(number))
    return taken


def _signature(os_path: str) -> tuple[int, int, int]:
    st = os.stat(os_path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def create_exclusively(os_path: str, content: bytes) -> tuple[int, int, int] | None:
    """Create a file with its whole content at once, only if the name is free.

    The content goes to a temporary file that is then hard-linked to the name: the link
    fails when the name exists, and a reader never sees a partial file.
    """
    folder, name = os.path.split(os_path)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        try:
            os.link(tmp, os_path)
        except FileExistsError:
            return None
        return _signature(os_path)
    finally:
        os.unlink(tmp)


class OutputReservations:
    """The output files that running executions will write, so no two share one.

    A reserved name is held in memory and, unless an existing file is to be overwritten,
    created at once with a placeholder (the notebook as it will start), so that other
    processes see the name taken and never a half-written notebook. A placeholder that
    is still untouched when its execution fails to start is removed again.
    """

    def __init__(self) -> None:
        self._reserved: set[str] = set()
        #: placeholders we created: key -> the file's signature right after
        self._placeholders: dict[str, tuple[int, int, int]] = {}

    async def _claim(self, os_path: str, content: bytes, key: str | None = None) -> bool:
        """Create the file exclusively; False when it (or its reservation) exists."""
        key = key or os.path.realpath(os_path)
        if key in self._reserved or os.path.lexists(os_path):
            return False
        self._reserved.add(key)  # held while the file is being created
        try:
            signature = await asyncio.to_thread(create_exclusively, os_path, content)
        except BaseException:
            self._reserved.discard(key)
            raise
        if signature is None:
            self._reserved.discard(key)
            return False
        self._placeholders[key] = signature
        return True

    async def reserve_numbered(self, notebook_os_path: str, content: bytes) -> str:
        """Reserve the free ``-Executed<N>`` name with the smallest N, and return it.

        The folder is listed once (a notebook run a thousand times has a thousand outputs
        beside it; probing each name in turn cost a path resolution apiece); the exclusive
        creation still decides, so a name taken meanwhile by another process is skipped.
        """
        taken = await asyncio.to_thread(_numbers_taken, notebook_os_path)
        real_folder = os.path.realpath(os.path.dirname(notebook_os_path))
        for number in itertools.count(1):
            if number in taken:
                continue
            candidate = numbered_output_name(notebook_os_path, number)
            key = os.path.join(real_folder, os.path.basename(candidate))
            if await self._claim(candidate, content, key):
                return candidate
        raise AssertionError("unreachable")

    async def reserve_exact(
        self, os_path: str, api_path: str, overwrite: bool, content: bytes
    ) -> None:
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
        if not await self._claim(os_path, content):
            raise BadRequest(
                f"output_path {api_path!r} already exists; pass overwrite=true to replace it"
            )

    def release(self, os_path: str, *, written: bool = True) -> None:
        """Forget a reservation; an untouched placeholder of a run that wrote nothing goes."""
        key = os.path.realpath(os_path)
        self._reserved.discard(key)
        signature = self._placeholders.pop(key, None)
        if signature is not None and not written:
            try:
                if _signature(os_path) == signature:
                    os.unlink(os_path)
            except OSError:
                pass
