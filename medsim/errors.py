"""Errors a user can act on. Stages print them as one line and exit non-zero, no traceback."""

from __future__ import annotations

__all__ = ["MedsimError"]


class MedsimError(Exception):
    """Base of every error whose message alone tells the user what to do."""
