"""User-facing errors: the CLI prints them as one line (no traceback) and exits 2."""


class VSDError(Exception):
    """An error the user can fix (bad input file, bad config, missing path): one clear line."""
