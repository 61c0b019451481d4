"""Errors a user can hit, each with the exit code the CLI maps it to (see README, "Exit codes")."""

import errno

EXIT_FAILED = 1  # a step could not finish (network, missing tool, cache miss offline)
EXIT_BAD_INPUT = 2  # bad configuration, flags or files named by the user
EXIT_CONFLICT = 3  # etcd already holds a different network config
# supply-chain alarm: hash mismatch, pin conflict, unsafe archive, wrong ELF, changed build output
EXIT_INTEGRITY = 4
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)


class FlannelnodeError(Exception):
    """An expected failure: printed as one message, never as a traceback."""

    exit_code = EXIT_FAILED


class ConfigError(FlannelnodeError):
    exit_code = EXIT_BAD_INPUT


class FetchError(FlannelnodeError):
    exit_code = EXIT_FAILED


class IntegrityError(FlannelnodeError):
    exit_code = EXIT_INTEGRITY


class Interrupted(FlannelnodeError):
    """A worker saw the stop flag that the main thread sets on Ctrl-C."""

    exit_code = EXIT_INTERRUPTED


# an OS error on a path: the path is wrong (bad input), or the machine is (the step failed)
_BAD_PATH = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM}


def describe_os_error(exc: OSError) -> str:
    """One line: which path, what is wrong with it; never a traceback."""
    where = ": ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOENT: "check the path (and that its directory exists)",
        errno.ENOTDIR: "a part of the path is a file where a directory is needed",
        errno.EISDIR: "name a file, not a directory",
        errno.EEXIST: "a file is in the way; move it or name another path",
        errno.EACCES: "check the permissions (or run as a user who may write there)",
        errno.EPERM: "check the permissions (or run as a user who may write there)",
        errno.ENOSPC: "free some space and run the step again",
    }.get(exc.errno or 0)
    return f"{where + ': ' if where else ''}{reason}" + (f" ({hint})" if hint else "")


def os_error_exit_code(exc: OSError) -> int:
    return EXIT_BAD_INPUT if exc.errno in _BAD_PATH else EXIT_FAILED
