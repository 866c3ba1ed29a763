"""HTTP layer of the endpoint, in the SageMaker inference container contract.

``GET /ping``: 200 once the models are loaded and the state is rebuilt, 503 before.
``POST /invocations``: ``application/json`` (one event object, or a list),
``application/jsonlines`` (one event per line) or ``text/csv`` (a header line,
then one event per line). One event object gets its result, or 400 with the
reasons it was refused; a list, lines or CSV get ``{"results": [...]}`` with a
result or an error per event, in order. ``?features=true`` adds the feature row.
``/docs``: the OpenAPI page.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from lakehound.serving.service import Item, Service

access_log = logging.getLogger("lakehound.serve.access")

JSON_TYPES = ("application/json",)
LINES_TYPES = ("application/jsonlines", "application/jsonl", "application/x-ndjson")
CSV_TYPES = ("text/csv",)


# One encoder for the raw text of every listed event (json.dumps with options builds
# one per call).
_compact = json.JSONEncoder(separators=(",", ":")).encode


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _record(obj: Any) -> dict[str, Any] | None:
    return obj if isinstance(obj, dict) else None


def parse_body(body: bytes, content_type: str) -> tuple[list[Item], bool]:
    """The request's events, and whether it was a single JSON object."""
    ctype = content_type.split(";")[0].strip().lower()
    text = body.decode("utf-8", errors="replace")
    if ctype in JSON_TYPES:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(400, f"body is not JSON: {exc}") from None
        if isinstance(obj, list):
            return [Item(_record(o), _compact(o)) for o in obj], False
        return [Item(_record(obj), text.strip())], True
    if ctype in LINES_TYPES:
        items = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                items.append(Item(_record(json.loads(line)), line))
            except json.JSONDecodeError:
                items.append(Item(None, line))
        return items, False
    if ctype in CSV_TYPES:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            return [], False
        header = next(csv.reader([lines[0]]))
        items = []
        for line in lines[1:]:
            values = next(csv.reader(io.StringIO(line)), [])
            ok = len(values) == len(header)
            items.append(Item(dict(zip(header, values, strict=False)) if ok else None, line))
        return items, False
    raise BadRequest(
        415,
        f"content type {ctype!r} not supported; use application/json, "
        "application/jsonlines or text/csv",
    )


def create_app(service: Service, token: str = "") -> FastAPI:
    cfg = service.cfg.serve
    app = FastAPI(
        title="LakeHound real-time scoring",
        description="Raw events in, ensemble severity and its reasons out "
        "(SageMaker inference container contract).",
    )

    @app.middleware("http")
    async def log_access(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        if cfg.access_log:
            access_log.info(
                json.dumps(
                    {
                        "method": request.method,
                        "path": request.url.path,
                        "status": response.status_code,
                        "client": request.client.host if request.client else None,
                        "bytes_in": int(request.headers.get("content-length") or 0),
                        "events": response.headers.get("x-events"),
                        "ms": round((time.perf_counter() - started) * 1000.0, 3),
                    }
                )
            )
        return response

    @app.get("/ping")
    def ping() -> Response:
        """200 when the models are loaded (SageMaker health check)."""
        if not service.healthy:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "model_version": service.model_version})

    @app.post("/invocations")
    async def invocations(request: Request, features: bool = False) -> Response:
        """Score one event, a list, JSON lines or CSV rows (see the module doc)."""
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        if not service.healthy:
            return JSONResponse({"error": "not ready"}, status_code=503)
        declared = int(request.headers.get("content-length") or 0)
        if declared > cfg.max_body_bytes:
            return _too_large(f"body of {declared} bytes > serve.max_body_bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > cfg.max_body_bytes:
                return _too_large(f"body > serve.max_body_bytes ({cfg.max_body_bytes})")
        try:
            items, single = parse_body(body, request.headers.get("content-type", ""))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if len(items) > cfg.max_batch_events:
            return _too_large(f"{len(items)} events > serve.max_batch_events")
        try:
            results = await asyncio.wait_for(
                run_in_threadpool(service.invoke, items, features),
                timeout=cfg.request_timeout_seconds,
            )
        except TimeoutError:
            return JSONResponse({"error": "timed out"}, status_code=503)
        headers = {"x-events": str(len(items))}
        if single:
            status = 400 if "reasons" in results[0] else 200
            return JSONResponse(results[0], status_code=status, headers=headers)
        return JSONResponse({"results": results}, headers=headers)

    return app


def _too_large(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=413)
