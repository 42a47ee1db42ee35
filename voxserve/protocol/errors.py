"""Protocol error codes and the exception that carries one to an `error` event."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_REQUIRED_PARAMETER = "missing_required_parameter"
    INVALID_VALUE = "invalid_value"
    INVALID_TYPE = "invalid_type"
    UNKNOWN_PARAMETER = "unknown_parameter"
    ACTIVE_RESPONSE = "conversation_already_has_active_response"
    CANCEL_NOT_ACTIVE = "response_cancel_not_active"
    COMMIT_EMPTY = "input_audio_buffer_commit_empty"
    ITEM_NOT_FOUND = "item_not_found"
    TRUNCATE_INVALID_AUDIO_END = "item_truncate_invalid_audio_end_ms"
    AUDIO_TOO_LARGE = "audio_too_large"
    MESSAGE_TOO_LARGE = "message_too_large"
    SESSION_EXPIRED = "session_expired"
    RATE_LIMITED = "rate_limited"
    MODEL_UNAVAILABLE = "model_unavailable"
    SERVER_ERROR = "server_error"


ErrorType = Literal["invalid_request_error", "server_error"]


class ProtocolError(Exception):
    """A client fault (or our own failure) that becomes one `error` event; the session goes on."""

    def __init__(self, code: ErrorCode, message: str, param: str | None = None,
                 type: ErrorType = "invalid_request_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type: ErrorType = type
