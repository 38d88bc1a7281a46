"""Errors a user can cause. The CLI prints their message on one line and exits with `exit_code`."""


class KganError(Exception):
    """Base class of kgan's user-facing errors."""

    exit_code = 1


class UsageError(KganError, ValueError):
    """Bad input: a flag, a dataset name, a path, a missing download. Exit code 2."""

    exit_code = 2


class DivergedError(KganError):
    """Training produced NaN or Inf in a loss or a weight. Exit code 3.

    Raised after the last good checkpoint has been restored; nothing is exported.
    """

    exit_code = 3
