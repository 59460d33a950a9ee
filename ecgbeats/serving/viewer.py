"""The ECG viewer: a static page at ``/viewer`` that scores a recording through the public API.

The page reads the file in the browser (a WFDB record, a CSV strip or a Kaggle beat CSV), posts it to
``/v1/ecg:classify`` or ``/v1/beats:classify`` like any other client (with ``Authorization: Bearer``
when the user enters a key) and draws the answer. The server adds no input path of its own, so the
service's limits and validation apply unchanged. Every asset ships in ``static/`` (no CDN).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
VIEWER_PATH = "/viewer"
STATIC_PATH = "/viewer/static"

# the page may load and call only this origin: a stray CDN link or injected script fails loudly
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ecgbeats</title>
<link rel="stylesheet" href="/viewer/static/viewer.css"></head>
<body class="home"><main>
<h1>ecgbeats</h1>
<p>Classifies ECG heartbeats into the AAMI classes N, S, V, F, Q.</p>
<ul>
<li><a href="/viewer">ECG viewer</a>: open a WFDB record or a CSV and see every beat classified</li>
<li><a href="/docs">API documentation</a> (OpenAPI)</li>
<li><a href="/v1/model">The served model</a>: version, digest, provenance, metrics</li>
<li><a href="/ready">Readiness</a></li>
</ul></main></body></html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return HTMLResponse(INDEX_HTML, headers=SECURITY_HEADERS)


@router.get(VIEWER_PATH)
def viewer() -> FileResponse:
    return FileResponse(STATIC_DIR / "viewer.html", media_type="text/html", headers=SECURITY_HEADERS)


def include_viewer(app: FastAPI) -> None:
    """Serve the viewer page, its assets and the landing page ``/`` from ``app``."""
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="viewer-static")
