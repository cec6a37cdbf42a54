"""Which exit code an exception means, under the failure policy in `shared.errors`.

Libraries signal "the service is down for now" in many ways (requests, httpx, urllib3, botocore,
the kubernetes client, MLflow's REST store, Ray); this module recognises them anywhere in the
exception's cause/context chain, so a step needs no try/except per call site.
"""

from __future__ import annotations

import errno
import re

from shared.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_TRANSIENT, StepError, TransientError

TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EPIPE,
        errno.EAGAIN,
    }
)
_TRANSIENT_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalError",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
    }
)
# MLflow's REST store turns a refused connection or an exhausted retry into an MlflowException
# whose message is all that is left of the cause.
_TRANSIENT_TEXT = re.compile(
    r"Max retries exceeded|failed with error code (?:408|425|429|5\d\d)|"
    r"Connection refused|Connection reset|ConnectTimeout|ReadTimeout|"
    r"timed out|Temporary failure in name resolution|too many (?:5\d\d|429) error responses|"
    r"Service Unavailable|Bad Gateway|Gateway Time-?out|Too Many Requests",
    re.IGNORECASE,
)
_MAX_CHAIN = 20


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status_of(exc: BaseException) -> int | None:
    """An HTTP status carried by a library exception (kubernetes, requests, httpx, MLflow)."""
    for attr in ("status", "status_code", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    for attr in ("status_code", "status"):
        value = getattr(response, attr, None)
        if isinstance(value, int):
            return value
    if isinstance(response, dict):  # botocore ClientError
        value = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(value, int):
            return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or anything in its cause chain) is a fault that may pass if retried."""
    for item in _chain(exc):
        if isinstance(item, TransientError):
            return True
        if isinstance(item, StepError):
            return False
        if isinstance(item, (ConnectionError, TimeoutError)):
            return True
        if isinstance(item, OSError) and item.errno in _TRANSIENT_ERRNOS:
            return True
        module = type(item).__module__ or ""
        name = type(item).__name__
        if module.startswith(("requests", "urllib3", "httpx", "httpcore")) and any(
            key in name for key in ("Connect", "Timeout", "Protocol", "RemoteDisconnected", "ReadError")
        ):
            return True
        if module.startswith("botocore"):
            if name in (
                "EndpointConnectionError",
                "ConnectionClosedError",
                "ReadTimeoutError",
                "ConnectTimeoutError",
                "ConnectionError",
            ):
                return True
            code = (getattr(item, "response", None) or {}).get("Error", {}).get("Code")
            if code in _TRANSIENT_AWS_CODES:
                return True
        if module.startswith("ray") and name in ("RaySystemError", "GetTimeoutError", "RpcError"):
            return True
        status = _status_of(item)
        if status in TRANSIENT_HTTP_STATUS:
            return True
        if module.startswith("mlflow") and _TRANSIENT_TEXT.search(str(item)):
            return True
    return False


def exit_code_for(exc: BaseException) -> int:
    """2 for bad input, 75 for a transient fault, 1 for anything else (a bug)."""
    if isinstance(exc, StepError):
        return EXIT_BAD_INPUT
    if is_transient(exc):
        return EXIT_TRANSIENT
    return EXIT_BUG
