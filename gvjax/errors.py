"""User-facing errors.

Anything the user can cause (a missing file, a foreign checkpoint, an impossible option)
raises `GvjaxError` with a one-line message. The CLI prints that line to stderr and
exits with code 2; it never shows a traceback for these.
"""


class GvjaxError(Exception):
    """An error caused by the user's input; its message is one readable line."""

    exit_code = 2
