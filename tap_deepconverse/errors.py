"""Errors that stop a run with a clear one-line message (no traceback) and a non-zero exit."""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError


class DeepConverseError(FatalAPIError):
    """Base class: the run cannot go on; the message says why and what to check."""


class ApiKeyRejectedError(DeepConverseError):
    """HTTP 401/403: the API refused the key."""


class RequestRejectedError(DeepConverseError):
    """HTTP 400/404 and other client errors: retrying the same request cannot help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiUnavailableError(DeepConverseError):
    """The retry budget ran out: the API kept failing or could not be reached."""


class PaginationError(DeepConverseError):
    """The API sent a cursor it had already sent for the same window."""


class IncompleteWindowError(DeepConverseError):
    """A window cannot be split any further and the API still sends a full page without a
    cursor the tap can follow: records would be left behind."""


class StateError(DeepConverseError):
    """The state given to the tap is corrupt or belongs to another tap."""
