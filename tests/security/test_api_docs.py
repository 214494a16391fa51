"""Item 7: /docs and /openapi.json need the token whenever one is set, and the documentation works offline
(Swagger UI's assets come from the app itself)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from harness.ops.failed import ResultsSource
from harness.ops.server import create_app

TOKEN = "s3cret-token"


@pytest.fixture
def source(tmp_path: Path) -> ResultsSource:
    (tmp_path / "history.jsonl").write_text("")
    return ResultsSource(tmp_path)


@pytest.mark.parametrize("require_token", [False, True])
def test_docs_and_spec_need_the_token_whenever_one_is_set(source: ResultsSource, require_token: bool) -> None:
    client = TestClient(create_app(source, token=TOKEN, require_token=require_token))
    for path in ("/docs", "/openapi.json"):
        refused = client.get(path)
        assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
        assert client.get(path, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/redoc").status_code == 404


def test_without_a_token_on_loopback_the_docs_are_open(source: ResultsSource) -> None:
    client = TestClient(create_app(source))
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_swagger_ui_is_served_by_the_app_not_a_cdn(source: ResultsSource) -> None:
    client = TestClient(create_app(source))
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "https://" not in page.replace("https://fastapi", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"docs-assets/{asset}" in page
        answer = client.get(f"/docs-assets/{asset}")
        assert answer.status_code == 200 and len(answer.content) > 10_000
