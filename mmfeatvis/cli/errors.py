"""The two kinds of failure the command line reports, and their exit codes.

A :class:`UsageError` means the command was written wrongly (a missing
file, an unknown layer, a bad option value): the usage line is printed and
the exit code is 2, as argparse does. A :class:`RunError` means the command
was fine but running it failed (a model that does not build, a checkpoint
that does not fit): exit code 1.
"""

USAGE_EXIT = 2
RUN_EXIT = 1


class UsageError(Exception):
    """A bad argument; reported with the usage line, exit code 2."""

    exit_code = USAGE_EXIT


class RunError(Exception):
    """A failure while running a valid command; exit code 1."""

    exit_code = RUN_EXIT
