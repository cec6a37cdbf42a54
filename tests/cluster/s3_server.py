"""A stand-in for MinIO: moto's S3 API on 127.0.0.1 that *checks* credentials.

Run as a script (the `s3_server` fixture does): it creates one IAM user whose access key id and
secret are the ones given on the command line (so tests can plant a recognisable secret and grep
for it later), allows that user everything, creates the buckets, then turns on moto's request
signing checks so a wrong key or secret is refused like a real object store would.

    python tests/cluster/s3_server.py --port 9000 --access-key-id AKIA... --secret S --bucket b1
"""

from __future__ import annotations

import argparse
import json
import sys

ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def _plant_user(access_key_id: str, secret: str) -> None:
    """An IAM user with exactly these credentials (moto only makes random ones, so swap them in)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    iam.create_user(region_name="us-east-1", user_name="pipeline")
    iam.put_user_policy("pipeline", "allow-all", ALLOW_ALL)
    key = iam.create_access_key("pipeline")
    del iam.access_keys[key.access_key_id]
    key.access_key_id, key.secret_access_key = access_key_id, secret
    iam.access_keys[access_key_id] = key


def _create_buckets(buckets: list[str]) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for bucket in buckets:
        s3.create_bucket(bucket, "us-east-1")


def _require_signatures() -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-key-id", required=True)
    parser.add_argument("--secret-access-key", required=True)
    parser.add_argument("--bucket", action="append", default=[])
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    _plant_user(args.access_key_id, args.secret_access_key)
    _create_buckets(args.bucket)
    _require_signatures()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"READY http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
