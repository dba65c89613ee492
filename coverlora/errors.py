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


# What the model libraries raise for a file that is missing, truncated or not what it claims to be.
LIBRARY_READ_ERRORS = (OSError, ValueError, KeyError, RuntimeError, EOFError)


class reading:
    """`with reading(path, what="adapter"):` turns a library's error while reading a model file (a truncated
    safetensors file, a corrupt config.json) into one UserError line naming the file."""

    def __init__(self, where: str, what: str, fix: str | None = None):
        self.where, self.what, self.fix = where, what, fix

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, UserError):
            return False
        from_safetensors = type(exc).__module__.startswith("safetensors")
        if type(exc).__name__ == "OutOfMemoryError" or not (from_safetensors or isinstance(exc, LIBRARY_READ_ERRORS)):
            return False
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"cannot read the {self.what} ({type(exc).__name__}: {detail})", where=self.where,
                        fix=self.fix or "the file may be truncated or from another model: re-create it") from None
