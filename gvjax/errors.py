"""User-facing errors.

Anything the user can cause (a missing file, a foreign checkpoint, an impossible option)
raises `GvjaxError` with a one-line message. The CLI prints that line to stderr and
exits with code 2; it never shows a traceback for these.
"""


class GvjaxError(Exception):
    """An error caused by the user's input; its message is one readable line."""

    exit_code = 2


_interrupt_pending = False


def note_interrupt() -> None:
    """Remember a Ctrl-C or SIGTERM that Python could only report, not raise.

    A KeyboardInterrupt that lands in a callback (a gc or weakref callback of jax, a `__del__`)
    goes to `sys.unraisablehook` and would be dropped; the CLI's hook calls this instead, and
    the next `check_interrupt` raises it.
    """
    global _interrupt_pending
    _interrupt_pending = True


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if an interrupt was noted; long loops call this once per batch."""
    if _interrupt_pending:
        raise KeyboardInterrupt
