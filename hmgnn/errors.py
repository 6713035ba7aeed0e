"""Errors that the CLI turns into one line on stderr and exit code 1, or 2 for a usage error (no traceback unless
HMGNN_DEBUG=1)."""


class HmgnnError(Exception):
    """A problem the user can fix: the message says what is wrong, where, and how to fix it."""


class ConfigError(HmgnnError):
    """A bad config file, key, type or value."""


class InputError(HmgnnError):
    """A bad or missing input file, column, row or id."""


class MissingArtifactError(HmgnnError):
    """A step's input folder is missing or incomplete: the message names the command that makes it."""


class UsageError(HmgnnError, ValueError):
    """A command or call used wrongly: options that do not fit together, an option or argument out of range. The
    CLI exits 2 for it, as for the errors its parser finds; to a Python caller it is also a ValueError."""


class ConfigUsageError(ConfigError, UsageError):
    """A bad config key or value that the command line gave (`--set`, `--k`, `--model`), not a config file."""


class Interrupted(BaseException):
    """SIGTERM arrived: like Ctrl-C, the running step stops and removes its temporary files; the CLI then exits
    with 128 + the signal number. A BaseException, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum
