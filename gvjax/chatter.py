"""What the libraries under us say (warnings, log lines, ffmpeg's and the decoders' stderr).

None of it reaches the user's terminal unless they ask with `gvjax --verbose`: while
`captured()` is active, Python warnings and library log records are kept in `lines()`, and
modules hand their subprocesses' logs to `note()`. With verbose on, each is also printed on
stderr as it arrives, prefixed with where it came from.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator

MAX_LINES = 2000
_state = {"verbose": False, "terminal_fd": None}  # terminal_fd: the real stderr while quiet_stderr redirects fd 2
_lines: collections.deque[str] = collections.deque(maxlen=MAX_LINES)


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = bool(verbose)


def verbose() -> bool:
    return _state["verbose"]


def note(source: str, text: str) -> None:
    """Keep `text` (one or more lines) said by `source` ('ffmpeg', 'audio decoder', ...)."""
    for line in str(text).splitlines():
        if not line.strip():
            continue
        entry = f"[{source}] {line.rstrip()}"
        _lines.append(entry)
        if _state["verbose"]:
            if _state["terminal_fd"] is not None:  # fd 2 is redirected: write past it
                os.write(_state["terminal_fd"], (entry + "\n").encode())
            else:
                print(entry, file=sys.stderr, flush=True)


def lines() -> list[str]:
    """What was kept, oldest first (the last MAX_LINES lines)."""
    return list(_lines)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            note(record.name, self.format(record))
        except Exception:  # a log line must never fail the program
            pass


@contextlib.contextmanager
def captured() -> Iterator[None]:
    """Route Python warnings and library logging to `note` for the duration."""
    handler = _Handler()
    root = logging.getLogger()
    old_handlers, old_level = root.handlers[:], root.level
    root.handlers, root.level = [handler], logging.WARNING
    absl = logging.getLogger("absl")
    old_absl = absl.propagate, absl.handlers[:]
    absl.handlers, absl.propagate = [], True
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: note(
            category.__name__, f"{message} ({filename}:{lineno})"
        )
        try:
            yield
        finally:
            root.handlers, root.level = old_handlers, old_level
            absl.propagate, absl.handlers = old_absl[0], old_absl[1]


@contextlib.contextmanager
def quiet_stderr(source: str, *, stdout: bool = False) -> Iterator[None]:
    """Keep what C libraries write on file descriptor 2 (and Python warnings) off the terminal
    during the block; it goes to `note(source, ...)`. With `stdout`, fd 1 too (gloo prints its
    connections there). The fds are restored even when the block raises. The redirect is
    process-wide: another thread's output is captured meanwhile too.
    """
    fds = (2, 1) if stdout else (2,)
    with tempfile.TemporaryFile() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.stderr.flush()
        sys.stdout.flush()
        saved = {}
        for fd in fds:
            try:
                saved[fd] = os.dup(fd)
            except OSError:  # no such fd at all: nothing to redirect
                continue
            os.dup2(tmp.fileno(), fd)
        outer, _state["terminal_fd"] = _state["terminal_fd"], saved.get(2) if _state["terminal_fd"] is None else _state["terminal_fd"]
        try:
            yield
        finally:
            _state["terminal_fd"] = outer
            sys.stderr.flush()
            sys.stdout.flush()
            for fd, old in saved.items():
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            note(source, tmp.read().decode("utf-8", "replace"))
            for w in caught:
                note(source, f"{w.category.__name__}: {w.message}")
