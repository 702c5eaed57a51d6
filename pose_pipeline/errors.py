"""Errors a user can act on: printed by the CLI as one line, without a traceback."""


class UserError(Exception):
    """Bad input file, bad option or bad config; the message names the file and the problem."""
