"""The one exception type for problems with the user's input.

The CLI catches :class:`UserError`, prints its message as one plain sentence on
stderr and exits with code 1, never with a traceback. Library code raises it
with a message that says what was wrong, what was expected and how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad data, bad options, a workdir in the wrong state.

    Example:
        >>> raise UserError("Epochs must be at least 1; got 0. Pass --epochs 1 or more.")
        Traceback (most recent call last):
        ...
        members.infra.errors.UserError: Epochs must be at least 1; got 0. Pass --epochs 1 or more.
    """
