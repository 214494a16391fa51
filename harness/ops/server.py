"""``retrybench serve``: the lesson's ``/failed-jobs`` endpoint, for every backend, as a FastAPI app."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime, and the
# dependencies refer to objects local to create_app.
import secrets
import time
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from harness.ops.failed import FailedJobsError, Filter, Source, find, parse_since, query, requeue, summary

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DURATION = r"^[0-9]{1,9}(\.[0-9]{1,9})?[smhd]$"
_ERROR: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "detail": {"type": "string"}}}}}}


class FailureSummary(BaseModel):
    job_id: str
    backend: str | None = None
    scenario: str | None = None
    task: str | None = None
    exc_type: str | None = None
    exc_message: str | None = None
    attempts: int | None = None
    failed_ns: int | None = None
    cell_id: str | None = None
    worker: str | None = None
    malformed: str | None = None  # why this record is shown as it is: not JSON, wrongly typed fields, too large


class FailedJobsPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[FailureSummary]


class FailedJob(FailureSummary):
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    traceback: str | None = None
    enqueued_ns: int | None = None
    records: int
    history: list[dict[str, Any]]


class Requeued(BaseModel):
    job_id: str
    requeued_as: str
    backend: str


class Health(BaseModel):
    status: str
    source: str


def _ns(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        return int(when.timestamp() * 1e9)
    except (OverflowError, OSError, ValueError):  # year 1 or 9999 at an extreme offset
        return 0 if when.year < 1970 else 2**63 - 1


def create_app(source: Source, *, token: str | None = None, require_token: bool = False) -> FastAPI:
    """The API over one failure-log source. ``require_token``: every endpoint needs the bearer token
    (``serve`` sets it when binding beyond loopback); requeue always needs it."""
    # The framework's own /docs and /openapi.json answer without the token and load Swagger UI from a CDN:
    # both are replaced below, behind the same check as every endpoint, with assets served from here.
    app = FastAPI(title="retrybench failed jobs",
                  description="The failure log of every backend (RQ, ARQ, Celery): list, inspect and requeue.",
                  version="1", docs_url=None, redoc_url=None, openapi_url=None)
    bearer = HTTPBearer(auto_error=False)
    unauthorized: dict[int | str, dict[str, Any]] = {401: {"description": "missing or wrong bearer token", **_ERROR}}

    def check(credentials: HTTPAuthorizationCredentials | None) -> None:
        given = credentials.credentials if credentials else ""
        if not token or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token" if token else
                                "requeue is disabled: start `retrybench serve` with --token",
                                headers={"WWW-Authenticate": "Bearer"})

    def reader(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if require_token:
            check(credentials)

    def writer(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        check(credentials)

    read_errors: dict[int | str, dict[str, Any]] = unauthorized if require_token else {}

    @app.get("/health", response_model=Health, responses=read_errors, dependencies=[Depends(reader)])
    def health() -> Health:
        return Health(status="ok", source=source.description)

    @app.get("/failed-jobs", response_model=FailedJobsPage, dependencies=[Depends(reader)],
             responses={**read_errors, 400: {"description": "unreadable source or bad filter", **_ERROR}})
    def list_failed_jobs(backend: str | None = None, task: str | None = None, exc_type: str | None = None,
                         since: Annotated[str | None, Query(pattern=DURATION,
                                                            description="failed within: 30s, 15m, 2h, 1d")] = None,
                         after: Annotated[datetime | None, Query(description="failed at or after this time "
                                                                 "(RFC 3339; UTC when no zone)")] = None,
                         run: str | None = None, offset: Annotated[int, Query(ge=0)] = 0,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> FailedJobsPage:
        try:
            bounds = [parse_since(since, now_ns=time.time_ns()) if since else None, _ns(after) if after else None]
            since_ns = max((b for b in bounds if b is not None), default=None)
            total, items = query(source, Filter(backend=backend, task=task, exc_type=exc_type, since_ns=since_ns,
                                                run=run), offset=offset, limit=limit)
        except FailedJobsError as exc:
            raise HTTPException(400, str(exc)) from None
        return FailedJobsPage(total=total, offset=offset, limit=limit,
                              items=[FailureSummary(**summary(r)) for r in items])

    @app.get("/failed-jobs/{job_id}", response_model=FailedJob, dependencies=[Depends(reader)],
             responses={**read_errors, 404: {"description": "no such failed job", **_ERROR},
                        400: {"description": "unreadable source", **_ERROR}})
    def get_failed_job(job_id: str) -> FailedJob:
        try:
            record = find(source, job_id)
        except FailedJobsError as exc:
            raise HTTPException(400, str(exc)) from None
        if record is None:
            raise HTTPException(404, f"no failed job {job_id!r}")
        return FailedJob(**record)

    @app.post("/failed-jobs/{job_id}/requeue", response_model=Requeued, dependencies=[Depends(writer)],
              responses={**unauthorized, 404: {"description": "no such failed job", **_ERROR},
                         409: {"description": "cannot be requeued from this source or backend", **_ERROR}})
    def requeue_failed_job(job_id: str) -> Requeued:
        # Blocking on purpose (FastAPI runs it in a thread): it may create the backend's environment.
        try:
            return Requeued(**requeue(source, job_id))
        except LookupError:
            raise HTTPException(404, f"no failed job {job_id!r}") from None
        except FailedJobsError as exc:
            raise HTTPException(409, str(exc)) from None

    _documentation(app, token)
    return app


def _documentation(app: FastAPI, token: str | None) -> None:
    """``/openapi.json`` and ``/docs`` (Swagger UI from the swagger-ui-bundle package, no CDN). Whenever a
    token is set, both need it: as a bearer token (curl -H) or as the password of HTTP Basic, which a browser
    asks for once and then sends with the page's own fetch of /openapi.json (any user name)."""
    import base64

    import swagger_ui_bundle
    from fastapi import Request
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    def guard(request: Request) -> None:
        if not token:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = value.strip()
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(given, validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                given = ""
        elif scheme.lower() != "bearer":
            given = ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token",
                                headers={"WWW-Authenticate": 'Basic realm="retrybench", charset="UTF-8"'})

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(guard)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(guard)])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url="docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="docs-assets/swagger-ui.css",
                                   swagger_favicon_url="docs-assets/favicon-32x32.png")

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
