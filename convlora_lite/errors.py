"""Errors a user can fix: each message says what was wrong and what to do."""


class UserError(Exception):
    """A mistake in the user's input (a name, a path, a file, the network); the CLI prints the
    message without a traceback."""


class ConfigError(UserError, ValueError):
    """An unknown or invalid name or option (method, model, dataset, preset, ...)."""


class DataError(UserError, ValueError):
    """A dataset or file on disk that is missing, unreadable or does not fit what is declared."""


class DownloadError(UserError, RuntimeError):
    """A download that could not complete (offline, HTTP error, checksum mismatch)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing or does not fit the model it is loaded into."""
