"""The one base of the errors a user can fix.

Every layer raises its own subclass (a bad setting, a missing model, a busy shift, too few reviewed frames); the
command line catches this base alone, prints the message and exits with the error's code. The message says what
is wrong and what to do. It lives in ``models/``, the bottom layer, so that every other layer can raise it.
"""

from __future__ import annotations


class DefectflowError(Exception):
    """An error a user can fix; the message says how. Commands exit with :attr:`exit_code` (2: fix and retry)."""

    exit_code: int = 2


class TryAgainLater(DefectflowError):
    """Nothing to fix, only to wait: the same command later works (exit 75, ``EX_TEMPFAIL``)."""

    exit_code = 75
