"""The one base of every failure a user can fix (a bad config, missing data, an unknown version,
an unreachable database, ...). Imports nothing: every layer may raise these.

The CLI catches :class:`DriftloopError` and prints its message as one ``error:`` line with exit
code 2; anything else is a bug, printed as one line pointing at the log file (exit 1).
"""

from __future__ import annotations


class DriftloopError(Exception):
    """A failure the user can fix; the message names the problem and the fix.

    ``transient`` says whether trying again may help (an unreachable database may come back; a
    missing file or a bad config will not): flows retry only transient failures.
    """

    transient: bool = False


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the failed step may help: any unexpected error, or a transient one."""
    return exc.transient if isinstance(exc, DriftloopError) else True


class AlertError(DriftloopError, RuntimeError):
    """An alert could not be delivered; the message names the sink, the status and the fix."""

    def __init__(self, message: str, *, attempts: int = 0, status_code: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status_code = status_code
