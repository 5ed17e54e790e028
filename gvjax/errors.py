"""User-facing errors.

Anything the user can cause (a missing file, a foreign checkpoint, an impossible option)
raises `GvjaxError` with a one-line message. The CLI prints that line to stderr and
exits with code 2; it never shows a traceback for these.
"""

import contextlib
import signal
import threading


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
    """Raise KeyboardInterrupt if an interrupt was noted (and forget it); long loops call this once per batch."""
    global _interrupt_pending
    if _interrupt_pending:
        _interrupt_pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_between_batches():
    """Inside: Ctrl-C and SIGTERM only note the interrupt, and the loop's `check_interrupt` raises
    it at the next batch; a second one while the first is pending raises at once.

    Python raises a signal's KeyboardInterrupt wherever the main thread happens to be, and inside
    a batch that is often C code calling back into Python (jax's dtype and weakref callbacks):
    there it can surface as a SystemError with a traceback, or be swallowed and lost. Between
    batches it is always a clean stop. An interrupt noted but not raised when the block ends
    (after the last batch) is raised there. Off the main thread (where handlers cannot be set)
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def defer(signum, frame):
        if _interrupt_pending:
            check_interrupt()  # the second: raised (and forgotten) at once
        note_interrupt()

    previous = {sig: signal.signal(sig, defer) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    check_interrupt()
