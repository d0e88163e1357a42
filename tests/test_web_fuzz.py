"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis + hypothesis):
whatever the query or upload, no answer is a 5xx and the server keeps answering. Bounded: a few
derandomized examples per endpoint, so that it takes seconds."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from numgen.web import create_app
from numgen.web.served import prepare_process
from web_models import served_models

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in numgen[test]")

EXAMPLES = 10  # per endpoint


def test_no_generated_request_gets_a_server_error(tmp_path_factory) -> None:
    prepare_process(threads=1)  # as `numgen serve` sets up its process
    app = create_app(served_models(tmp_path_factory))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/decode", "/api/write", "/api/style"}
    seen = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def no_server_error(case) -> None:
            response = case.call()
            seen.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query}: {response.text[:300]}"
            )

        no_server_error()
    assert len(seen) >= len(operations) and any(400 <= status < 500 for status in seen)
    assert TestClient(app).get("/healthz").json()["status"] == "ok"  # and it still answers
