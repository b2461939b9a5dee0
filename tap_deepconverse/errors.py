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
    """The API's cursor cannot be followed to an end: sent twice for the same window, of a
    type that cannot be sent back, or leading on and on to pages with nothing new."""


class RedirectRefusedError(DeepConverseError):
    """The API redirected elsewhere than its own scheme, host and port, in a loop, or to no
    valid place: the key is not sent there."""


class AnswerTooLargeError(DeepConverseError):
    """An answer is larger than ``max_answer_mb``, as sent or once inflated."""


class RecordTooDeepError(DeepConverseError):
    """A record was decoded but cannot be written (nested too deep)."""


class IncompleteWindowError(DeepConverseError):
    """A window cannot be split any further and the API still sends a full page without a
    cursor the tap can follow: records would be left behind."""


class StateError(DeepConverseError):
    """The state given to the tap is corrupt or belongs to another tap."""
