"""Schemathesis against our own OpenAPI spec: valid and invalid generated requests, no 5xx.

The spec comes from `create_app(...).openapi()` (building the app loads nothing), the requests go
to a live Uvicorn server on 127.0.0.1 running the tiny model.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from serving.app import create_app
from serving.settings import ServeSettings

schema = schemathesis.openapi.from_dict(
    create_app(ServeSettings(model_uri=str(Path("unused"))), tracking_uri="unused").openapi()
)
schema.config.generation.update(modes=["positive", "negative"], max_examples=40, deterministic=True)


@schema.parametrize()
def test_generated_requests_never_get_a_server_error(case, live_server):
    response = case.call(base_url=live_server, timeout=30)
    case.validate_response(
        response, checks=[not_a_server_error, status_code_conformance, content_type_conformance]
    )
    assert response.status_code < 500
