"""The one error type a user sees: a single line saying what is wrong, where, and how to fix it."""


class UserError(Exception):
    """A mistake in the user's input (data, config, paths). Printed as one line; exit code 2."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        parts = [f"{where}: {message}" if where else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(parts))


class ConfigError(UserError):
    """A bad config key or value."""
