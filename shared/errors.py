"""The failure policy every step follows, as exception types and exit codes.

- `StepError` (bad input: a validation error, a bad value, a missing file named on the command line)
  exits 2 with one line naming the field or file and the problem. The workflow never retries it.
- `TransientError` (a service that is down for now: refused or reset connection, timeout, HTTP 429
  or 5xx, S3 throttling, Ray or Kubernetes API unavailable) exits 75 (`EX_TEMPFAIL`); the workflow
  and the local runner retry it with backoff. Unwrapped library exceptions of that kind are
  classified the same way by `shared.failures.exit_code_for`.
- Anything else is a bug: exit 1 with the traceback in the log.
"""

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_TRANSIENT = 75  # sysexits.h EX_TEMPFAIL: "try again later"


class StepError(Exception):
    """Bad input or an unusable environment, with a message naming what is wrong (exit 2)."""


class TransientError(Exception):
    """A fault that may pass by itself: a service unreachable or overloaded right now (exit 75)."""
