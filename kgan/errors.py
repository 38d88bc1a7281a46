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


class DiskFullError(KganError):
    """The device ran out of space while writing (ENOSPC). Exit code 1; the partial write is removed."""

    exit_code = 1


class TerminatedError(KganError):
    """The run received SIGTERM: it stopped at a step boundary, keeping its last checkpoint. Exit code 143."""

    exit_code = 143
