"""S3 pre-flight: before a step starts work, prove the object store it will write to is usable.

A misconfigured MinIO/S3 otherwise surfaces minutes later as a stack trace deep inside MLflow,
DVC or a Ray trial. `check_bucket` makes one small signed request (list at most one key under the
prefix) and turns each way it can fail into a `StepError` that names the endpoint and the bucket:
unreachable endpoint, rejected credentials, missing bucket, access denied. Credentials are never
put in a message: they are taken from `Settings` (or passed in) and scrubbed from any text that
comes back from botocore.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse

from shared.errors import StepError, TransientError
from shared.failures import is_transient
from shared.settings import Settings

log = logging.getLogger(__name__)

AWS_DEFAULT_ENDPOINT = "the default AWS S3 endpoint"
_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
    }
)
_DENIED_ERRORS = frozenset({"AccessDenied", "AllAccessDisabled", "403", "Forbidden"})
_MISSING_BUCKET_ERRORS = frozenset({"NoSuchBucket", "404", "NotFound"})


@dataclass(frozen=True)
class S3Location:
    """`s3://bucket/prefix` split into its parts."""

    bucket: str
    prefix: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def is_s3_uri(uri: str | None) -> bool:
    return bool(uri) and urlparse(str(uri)).scheme in ("s3", "s3a")


def parse_s3_uri(uri: str) -> S3Location:
    """`s3://bucket/some/prefix` -> S3Location('bucket', 'some/prefix'); StepError otherwise."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
        raise StepError(f"{uri!r} is not an S3 URI (expected s3://BUCKET[/PREFIX])")
    return S3Location(bucket=parsed.netloc, prefix=parsed.path.strip("/"))


def display_endpoint(endpoint_url: str | None) -> str:
    """The endpoint as it may be shown to users: any user:password@ part removed."""
    if not endpoint_url:
        return AWS_DEFAULT_ENDPOINT
    parsed = urlparse(endpoint_url)
    if parsed.username or parsed.password:
        host = parsed.hostname or ""
        netloc = f"{host}:{parsed.port}" if parsed.port else host
        parsed = parsed._replace(netloc=netloc)
    return urlunparse(parsed)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def s3_client(
    endpoint_url: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    timeout_s: float = 5.0,
):
    """A boto3 S3 client that fails fast (short timeouts, no retries) for pre-flight checks."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},  # MinIO and most S3 stand-ins serve path-style URLs
    )
    try:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=config,
        )
    except ValueError as exc:  # botocore rejects a malformed endpoint URL here
        raise StepError(f"S3 endpoint {display_endpoint(endpoint_url)!r} is not a valid URL: {exc}") from None


def check_bucket(
    location: S3Location | str,
    *,
    endpoint_url: str | None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Raise StepError (naming endpoint and bucket, never the secret) unless the bucket is usable.

    One `ListObjectsV2` with `MaxKeys=1` under the prefix: it needs the endpoint to answer, the
    signature to verify, the bucket to exist and read access to the prefix, which is what every
    later step needs too.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    loc = parse_s3_uri(location) if isinstance(location, str) else location
    where = f"S3 endpoint {display_endpoint(endpoint_url)}"
    what = f"bucket {loc.bucket!r}"
    secrets = [s for s in (access_key_id, secret_access_key) if s]
    client = s3_client(endpoint_url, access_key_id, secret_access_key, timeout_s)
    try:
        client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.prefix, MaxKeys=1)
    except (NoCredentialsError, PartialCredentialsError):
        raise StepError(
            f"no S3 credentials for {what} at {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except EndpointConnectionError:
        raise TransientError(f"{where} is unreachable (needed for {what})") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        detail = _scrub(f"{code}: {error.get('Message', '')}".strip(": "), secrets)
        if code in _MISSING_BUCKET_ERRORS:
            raise StepError(f"{what} does not exist at {where} ({detail})") from None
        if code in _CREDENTIAL_ERRORS:
            raise StepError(
                f"{where} rejected the credentials for {what} ({detail}); "
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        if code in _DENIED_ERRORS:
            raise StepError(f"{where} denied access to {loc.uri} ({detail})") from None
        error = TransientError if is_transient(exc) else StepError  # throttling, 5xx
        raise error(f"{where} failed for {loc.uri}: {detail}") from None
    except BotoCoreError as exc:  # timeouts, bad responses, proxy errors
        detail = _scrub(str(exc), secrets)
        raise TransientError(
            f"{where} is unreachable (needed for {what}): {exc.__class__.__name__}: {detail}"
        ) from None
    log.info("object store ok: %s at %s", loc.uri, display_endpoint(endpoint_url))


def check_s3_uri(
    uri: str, settings: Settings, *, endpoint_url: str | None = None, timeout_s: float = 5.0
) -> None:
    """Pre-flight an `s3://` URI with the platform settings; anything else (local, http) passes.

    `endpoint_url` overrides `MLFLOW_S3_ENDPOINT_URL` (e.g. a DVC remote's own `endpointurl`).
    """
    if not is_s3_uri(uri):
        return
    check_bucket(
        parse_s3_uri(uri),
        endpoint_url=endpoint_url or settings.mlflow_s3_endpoint_url,
        access_key_id=settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None,
        secret_access_key=(
            settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None
        ),
        timeout_s=timeout_s,
    )


def check_dvc_remote(remote: Mapping[str, Any], *, timeout_s: float = 5.0) -> None:
    """Pre-flight a DVC remote's config section (`repo.config["remote"][name]`); non-S3 ones pass.

    Uses the remote's own `endpointurl` and, when the registry configures them (normally in
    `.dvc/config.local`), its `access_key_id`/`secret_access_key`; otherwise the same credential
    chain DVC uses (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment).
    """
    url = str(remote.get("url") or "")
    if not is_s3_uri(url):
        return
    check_bucket(
        url,
        endpoint_url=remote.get("endpointurl") or None,
        access_key_id=remote.get("access_key_id") or None,
        secret_access_key=remote.get("secret_access_key") or None,
        timeout_s=timeout_s,
    )
