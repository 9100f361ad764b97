"""Atomic file writes: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds.
    On failure the temp file goes, and so do the (empty) parent directories this call made.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "x.txt").read_text()
    'hi'
    """
    path = Path(path)
    created = _make_parents(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp makes 0600 files; give the output the permissions a plain open() would.
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        _remove_empty(created, tmp)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _make_parents(path: Path) -> list[Path]:
    """Create ``path``'s missing parent directories; return them, innermost first."""
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(created: list[Path], tmp: Path) -> None:
    """After a failed write: remove ``tmp`` and the parents in ``created`` left empty."""
    import shutil

    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
        tmp.unlink()
    for parent in created:
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def replace_directory(source: Path, target: Path) -> None:
    """Move the finished directory ``source`` onto ``target``. A previous ``target`` is moved
    aside first, put back if the move fails, and removed once ``source`` is in its place."""
    import shutil

    aside: Path | None = None
    if target.exists():  # a fresh name, so no earlier leftover or concurrent writer is hit
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, aside / target.name)
    try:
        os.replace(source, target)
    except BaseException:
        if aside is not None and not target.exists():  # put the previous one back
            os.replace(aside / target.name, target)
            aside.rmdir()
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; move it onto ``path`` only if the block
    succeeds (:func:`replace_directory`: a previous ``path`` is replaced, so callers check
    beforehand whether that is allowed), so a reader never sees half of it. On failure the
    temp directory goes, and so do the parent directories this call created.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_directory(d) as tmp:
    ...     _ = (tmp / "a.txt").write_text("hi")
    >>> sorted(p.name for p in d.iterdir())
    ['a.txt']
    """
    path = Path(path)
    created = _make_parents(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 directories
        replace_directory(tmp, path)
    except BaseException:
        _remove_empty(created, tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def check_output_path(
    path: str | os.PathLike[str], *, directory: bool, option: str = "--out"
) -> None:
    """Refuse, before any work, an output that cannot be written: ``path`` or one of its
    parents is an existing file (or ``path`` is an existing directory where a file goes).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = f.write_text("x")
    >>> check_output_path(f / "run", directory=True)
    Traceback (most recent call last):
    ...
    promogym.errors.PromogymInputError: --out .../data.csv/run: .../data.csv is a file, not a directory; pick an output path outside it
    """
    from promogym.errors import PromogymInputError

    path = Path(path)
    if path.is_dir() and not directory:
        raise PromogymInputError(f"{option} {path}: is a directory; give a file name")
    if path.exists() and not path.is_dir() and directory:
        raise PromogymInputError(
            f"{option} {path}: exists and is not a directory; pick another name"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PromogymInputError(
                    f"{option} {path}: {parent} is a file, not a directory; pick an output "
                    "path outside it"
                )
            return


def read_toml(path: str | os.PathLike[str], source: str | None = None) -> dict[str, object]:
    """Parse the TOML file ``path`` (a byte-order mark is skipped). Any reason it cannot be
    read is a one-line :class:`~promogym.errors.ConfigError` starting with ``source``
    (default: the path) and naming the fix."""
    import tomllib

    from promogym.errors import ConfigError

    path = Path(path)
    source = source or str(path)
    if path.is_dir():
        raise ConfigError(f"{source}: is a directory; pass a TOML file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found; pass an existing TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            f"{source}: cannot read it ({exc.strerror}); pass a readable file"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML ({exc}); fix the syntax") from None


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON values: NaN and inf become ``None`` (JSON has no NaN), numpy
    scalars and arrays plain numbers and lists, dates and paths strings.

    >>> jsonable({"ratio": float("nan"), "n": np.int64(3), "when": dt.date(2026, 12, 1)})
    {'ratio': None, 'n': 3, 'when': '2026-12-01'}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.date | Path):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def dumps(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of :func:`jsonable` ``value`` (never a bare ``NaN``)."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)
