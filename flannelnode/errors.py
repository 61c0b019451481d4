"""Errors a user can hit, each with the exit code the CLI maps it to (see README, "Exit codes")."""

EXIT_FAILED = 1  # a step could not finish (network, missing tool, cache miss offline)
EXIT_BAD_INPUT = 2  # bad configuration, flags or files named by the user
EXIT_CONFLICT = 3  # etcd already holds a different network config
EXIT_INTEGRITY = 4  # supply-chain alarm: hash mismatch, pin conflict, unsafe archive, wrong ELF


class FlannelnodeError(Exception):
    """An expected failure: printed as one message, never as a traceback."""

    exit_code = EXIT_FAILED


class ConfigError(FlannelnodeError):
    exit_code = EXIT_BAD_INPUT


class FetchError(FlannelnodeError):
    exit_code = EXIT_FAILED


class IntegrityError(FlannelnodeError):
    exit_code = EXIT_INTEGRITY
