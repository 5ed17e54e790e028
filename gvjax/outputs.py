"""The output policy every writing command follows, and the one place OS errors become one line.

* An existing output is replaced only with `force` (`--force`).
* An output path never equals an input path (hard links and symlinks included).
* A sidecar record (`OUT.json` beside `OUT.mp4`) never replaces a file that is not a gvjax record.
* A directory is replaced only when it is a gvjax checkpoint (its `config.json` says so), and
  never when it is, or holds, the current directory.
* Every output is written to a temporary sibling (`.NAME.gvjax-tmp-XXXX`) and renamed at the end;
  a failure (SIGTERM and Ctrl-C included) removes what it started.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Iterable, Iterator

from gvjax.errors import GvjaxError

#: video containers the writer produces (H.264 + AAC), suffix -> ffmpeg muxer
VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
TMP_MARK = ".gvjax-tmp-"


class OutputError(GvjaxError):
    """An output that may not be written (exists, is an input, is not ours to replace, ...)."""


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    p = pathlib.Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def check_free_space(path: str | os.PathLike, needed: int) -> None:
    """OutputError, before writing, when the file system holding `path` lacks `needed` bytes (+1 MiB)."""
    free = free_bytes(pathlib.Path(path).absolute().parent)
    if free is not None and free < needed + (1 << 20):
        raise OutputError(f"no space left on the device holding {path}: it needs about {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB is free")


def os_error_message(e: OSError, path: str | os.PathLike | None = None) -> str:
    """One line naming the real cause of an OS error: a full disk, a read-only file system, ..."""
    where = str(path if path is not None else (e.filename or "output"))
    if e.errno is None and (free_bytes(where) or 0) < (1 << 20):  # numpy's short write ("3072 requested and 3040 written")
        return f"no space left on the device holding {where}"
    causes = {
        errno.ENOSPC: f"no space left on the device holding {where}",
        errno.EDQUOT: f"disk quota exceeded writing {where}",
        errno.EROFS: f"{where} is on a read-only file system",
        errno.EACCES: f"permission denied: {where}",
        errno.EPERM: f"operation not permitted: {where}",
        errno.ENOENT: f"no such file or directory: {where}",
        errno.EISDIR: f"{where} is a directory",
        errno.ENOTDIR: f"{where}: a part of the path is not a directory",
        errno.ENAMETOOLONG: f"file name too long: {where}",
    }
    return causes.get(e.errno, f"{where}: {e.strerror or e}")


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (after resolving links; hard links count too)."""
    a, b = pathlib.Path(a), pathlib.Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_not_input(out: pathlib.Path, inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """OutputError when `out` is one of `inputs` ((what, path) pairs; None paths are skipped)."""
    for what, path in inputs:
        if path is not None and str(path) and same_path(out, path):
            raise OutputError(f"output {out} is the {what}: choose another output path")


def check_writable_dir(directory: pathlib.Path) -> None:
    """OutputError unless `directory` exists and a file can be created in it (probed, then removed)."""
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=f".probe{TMP_MARK}"):
            pass
    except OSError as e:
        raise OutputError(f"output directory {directory} is not writable: {(e.strerror or str(e)).lower()}") from None


def check_file_output(
    out: str | os.PathLike, *, force: bool, inputs: Iterable[tuple[str, str | os.PathLike | None]] = (), what: str = "output"
) -> pathlib.Path:
    """Check, before any compute, that file `out` may be written; returns it as a Path."""
    out = pathlib.Path(out)
    if out.is_dir():
        raise OutputError(f"{what} {out} is a directory")
    check_not_input(out, inputs)
    if (out.exists() or out.is_symlink()) and not force:
        raise OutputError(f"{out} already exists (use --force to replace it)")
    check_writable_dir(out.absolute().parent)
    return out


def check_video_output(out: str | os.PathLike) -> pathlib.Path:
    """OutputError unless `out`'s suffix is a container the video writer produces."""
    out = pathlib.Path(out)
    if out.suffix.lower() not in VIDEO_FORMATS:
        raise OutputError(f"-o {out.name}: the video must end in {', '.join(VIDEO_FORMATS)}")
    return out


def is_record(path: pathlib.Path, key: str) -> bool:
    """Whether file `path` is a JSON object written by gvjax with `key` set (e.g. 'gvjax_render')."""
    return key in (read_json_object(path) or {})


def check_record_output(path: pathlib.Path, *, key: str, force: bool, inputs=()) -> None:
    """A sidecar record may replace only a gvjax record of its kind, and that only with `force`."""
    if path.is_dir():
        raise OutputError(f"the record {path} would replace a directory: choose another output name")
    check_not_input(path, inputs)
    if path.exists() or path.is_symlink():
        if not is_record(path, key):
            raise OutputError(f"{path} exists and is not a gvjax record: refusing to replace it (choose another output name)")
        if not force:
            raise OutputError(f"{path} already exists (use --force to replace it)")


def read_json_object(path: pathlib.Path) -> dict | None:
    """The JSON object in file `path`, or None when it is missing, unreadable, not JSON or not an object."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(1 << 24))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_gvjax_checkpoint(path: pathlib.Path) -> bool:
    """Whether directory `path` holds a `config.json` with format 'gvjax'."""
    return (read_json_object(pathlib.Path(path) / "config.json") or {}).get("format") == "gvjax"


def check_dir_output(out: str | os.PathLike, *, force: bool, inputs=(), replaceable=is_gvjax_checkpoint, kind: str = "gvjax checkpoint") -> pathlib.Path:
    """Check that directory `out` may be written: new, or (with `force`) an old one of ours."""
    out = pathlib.Path(out)
    check_not_input(out, inputs)
    if out.exists() or out.is_symlink():
        if not force:
            raise OutputError(f"{out} already exists (use --force to replace it)")
        if not out.is_dir() or out.is_symlink():
            raise OutputError(f"--force replaces only a {kind} directory; {out} is not one")
        cwd = pathlib.Path.cwd().resolve()
        if out.resolve() == cwd or out.resolve() in cwd.parents:
            raise OutputError(f"--force will not replace {out}: it holds the current directory")
        if any(out.iterdir()) and not replaceable(out):  # an empty folder holds nothing to lose
            raise OutputError(f"--force replaces only a {kind} directory; {out} is not one (no gvjax config.json)")
    check_writable_dir(out.absolute().parent)
    return out


def new_sibling(path: pathlib.Path, *, directory: bool = False, suffix: str = "") -> pathlib.Path:
    """A fresh temporary file (or directory) beside `path`, named `.NAME.gvjax-tmp-XXXX`."""
    parent = path.absolute().parent
    try:
        if directory:
            tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_MARK}", dir=parent))
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)
            return tmp
        fd, name = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", suffix=suffix, dir=parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        return pathlib.Path(name)
    except OSError as e:
        raise OutputError(f"cannot write to {parent}: {os_error_message(e, parent)}") from None


def remove(path: pathlib.Path, attempts: int = 1) -> None:
    """Remove a file or directory tree if it exists; never raises. `attempts` > 1 retries (50 ms
    apart) while a writer that failed may still be finishing in the background (orbax)."""
    import time

    for i in range(attempts):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass
        if not (path.exists() or path.is_symlink()):
            return
        time.sleep(0.05)


def replace_into(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Rename finished `tmp` onto `path`; an old directory there is moved aside, then deleted."""
    old = None
    if path.is_dir() and not path.is_symlink():
        old = new_sibling(path, directory=True)
        os.rmdir(old)
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    if old is not None:
        remove(old)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, directory: bool = False, suffix: str = "") -> Iterator[pathlib.Path]:
    """Yield a temporary sibling of `path`; renamed onto `path` on success, removed on any failure.

    OSErrors (a full disk, a read-only folder) become one-line OutputErrors naming the cause.
    """
    path = pathlib.Path(path)
    tmp = new_sibling(path, directory=directory, suffix=suffix)
    try:
        yield tmp
        replace_into(tmp, path)
    except OSError as e:
        remove(tmp)
        raise OutputError(f"could not write {path}: {os_error_message(e, path)}") from None
    except BaseException:
        remove(tmp)
        raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in `chunk`-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
