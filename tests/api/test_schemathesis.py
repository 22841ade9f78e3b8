"""Property-based run of the whole OpenAPI schema against the live app (schemathesis).

Every operation gets generated requests, valid and invalid; the checks assert no 5xx, documented
status codes, content types and headers, response bodies that match their schemas, and invalid
input rejected with a 4xx. `positive_data_acceptance` is left out: the schema cannot express
cross-parameter rules (`from` <= `to`, range caps, a known IANA zone), which are answered with 422.

The schema comes from the app object (building it needs no database); requests go over HTTP to the
same app served by uvicorn over the seeded database, with API keys on.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import create_app
from shoppulse.settings import Settings
from tests.api.conftest import api_client

API_KEY = "schemathesis-key"

schema = schemathesis.openapi.from_dict(create_app(Settings(api_keys=API_KEY)).openapi())
schema.config.update(headers={"X-API-Key": API_KEY})
schema = schema.exclude(path="/analytics/stream")  # an event stream never ends; tests/api/test_live.py covers it


@pytest.fixture(scope="module")
def base_url(seeded_database: str) -> Iterator[str]:
    with api_client(seeded_database, api_keys=API_KEY) as http:
        yield str(http.base_url)


@schema.parametrize()
@hypothesis.settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, excluded_checks=[positive_data_acceptance])
