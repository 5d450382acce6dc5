"""A property run over ``registry serve``'s OpenAPI spec (schemathesis): generated requests to every
operation, with an admin token, never get a 5xx (nor a response that breaks the spec's status codes).
Revoking tokens is left out (a generated id could revoke the run's own token)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import synthreg
from synthreg.registry.tokens import create_token

TOKEN: dict[str, str] = {}
STATS: list[tuple[str, str, int]] = []


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Any:
    from conftest import SMALL_SPEC

    from synthreg.service.app import create_app

    base = tmp_path_factory.mktemp("fuzz")
    (base / "small.yaml").write_text(SMALL_SPEC)
    reg = synthreg.init(base / "ws")
    reg.create("small", spec=base / "small.yaml")
    TOKEN["admin"] = create_token(reg.workspace, "fuzzer", "admin")[1]
    app = create_app(base / "ws", workers=1)
    return schemathesis.openapi.from_asgi("/openapi.json", app).exclude(method="DELETE")


def test_no_server_error_on_generated_requests(api_schema: Any) -> None:
    """Each operation in turn (schemathesis' strategies driven by hypothesis directly: its pytest
    plugin does not load under this pytest)."""
    from hypothesis import given

    headers = {"Authorization": f"Bearer {TOKEN['admin']}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            STATS.append((case.method, case.path, response.status_code))
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
                )

        run()
    assert not failures, "\n".join(failures[:10])
    classes = {code // 100 for _, _, code in STATS}
    assert {2, 4} <= classes and len(STATS) >= 12 * 15  # it ran, and reached both answers and refusals
