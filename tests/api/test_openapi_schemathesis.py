"""Schemathesis against the API, from its own OpenAPI document: no 500, every answer as documented.

Cases are generated from the document (valid ones, and invalid ones where an operation takes
input) and sent with a working key through the WSGI app; each answer must not be a server
error, and its status and body must be those the document gives for that operation. On
SQLite only: this checks the document against the code, not the databases.
"""

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from .conftest import bearer, sign_up

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
OPERATIONS = [
    ("GET", "/api/v1/newsletters"),
    ("POST", "/api/v1/newsletters/{slug}/subscriptions"),
    ("GET", "/api/v1/newsletters/{slug}/subscriptions"),
    ("GET", "/api/v1/newsletters/{slug}/subscriptions/{email}"),
    ("DELETE", "/api/v1/newsletters/{slug}/subscriptions/{email}"),
    ("POST", "/api/v1/newsletters/{slug}/subscriptions/{email}/unsubscribe"),
    ("GET", "/api/v1/newsletters/{slug}/export"),
    ("GET", "/api/v1/newsletters/{slug}/changes"),
]
KNOWN = "reader@example.org"
VALID_SIGNUP = {
    "email": "new@example.org",
    "consent": {"at": "2026-01-01T00:00:00Z", "page": "https://example.org/", "text": "Yes"},
}


@pytest.fixture
def database_url(tmp_path, sqlite_template):
    """Use SQLite alone here (see the module's doc)."""
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def test_the_document_lists_every_operation_of_the_api(client):
    document = client.get("/api/v1/openapi.json").get_json()
    listed = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests_get_documented_answers(app, client, key, method, path):
    sign_up(client, key, KNOWN)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = schema[path][method]
    ours = {"slug": "briefing"} | ({"email": KNOWN} if "{email}" in path else {})
    # Mostly with the test's key and newsletter (else nearly every case is a 401 or a 404).
    ours = {"path_parameters": ours, "headers": bearer(key)}
    cases = [
        operation.as_strategy(GenerationMode.POSITIVE, **ours),
        operation.as_strategy(GenerationMode.POSITIVE),
    ]
    if "{" in path or method == "POST" or operation.query:
        cases.append(operation.as_strategy(GenerationMode.NEGATIVE, **ours))
    if (method, path) == OPERATIONS[1]:
        cases.append(operation.as_strategy(GenerationMode.POSITIVE, **ours, body=VALID_SIGNUP))

    @given(case=st.one_of(cases))
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answered_as_documented(case):
        case.call_and_validate(checks=CHECKS)

    answered_as_documented()
