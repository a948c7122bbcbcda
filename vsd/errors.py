"""User-facing errors: the CLI prints them as one line (no traceback) and exits 2 (or the
error's own ``exit_code``, for a scheduler that must tell "busy, try later" from "fix the config")."""


class VSDError(Exception):
    """An error the user can fix (bad input file, bad config, missing path): one clear line."""

    exit_code = 2


class ConfigError(VSDError, ValueError):
    """A config problem, reported as one line naming the dotted field (``vsd.config`` re-exports it;
    defined here so that modules `vsd.config` itself uses can raise it without importing it)."""
