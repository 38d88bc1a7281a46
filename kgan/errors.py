"""Errors a user can cause. The CLI prints their message on one line and exits with `exit_code`."""


class KganError(Exception):
    """Base class of kgan's user-facing errors."""

    exit_code = 1


class UsageError(KganError, ValueError):
    """Bad input: a flag, a dataset name, a path, a missing download. Exit code 2."""

    exit_code = 2
