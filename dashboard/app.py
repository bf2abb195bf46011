"""The dashboard's web app: a JSON API (OpenAPI docs at /docs), live updates over SSE, and the browser pages.

Everything is served from this process (pages, scripts, styles: no CDN). Reads
go through a ``LedgerView`` or ``FleetView``; the only writes are a member's
vote and proposal, each a signed envelope the view verifies before the DAO
sees it, so nothing a browser sends unsigned changes state. A ``ResolverView``
(dashboard/resolver.py) also resolves the fleet's DIDs (``/1.0/identifiers/...``,
the W3C DID Resolution HTTP binding) and serves its signed descriptor (``/api/fleet``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from dashboard import resolver
from dashboard.prometheus import CONTENT_TYPE
from dashboard.view import FleetView, LedgerView, ViewError

HERE = Path(__file__).parent
PAGES = {"/": ("map", "Fleet map"), "/robots": ("robots", "Robots"), "/robots/{did}": ("robot", "Robot"),
         "/market": ("market", "Market"), "/revenue": ("revenue", "Revenue"), "/dao": ("dao", "DAO"),
         "/ledger": ("ledger", "Ledger")}
SWAGGER_UI = "/static/vendor/swagger-ui"  # swagger-ui-dist, vendored (dashboard/vendor/README.md)
MAX_WRITE_BYTES = 64 * 1024
EVENT_PERIOD_S = 1.0


def create_app(view: LedgerView, *, stopping: threading.Event | None = None) -> FastAPI:
    """The app over ``view``; SSE streams end once ``stopping`` is set (so the server can shut down)."""
    stopping = stopping or threading.Event()
    app = FastAPI(title="DePAI fleet dashboard", version="1", docs_url=None, redoc_url=None,
                  description="A fleet's robots, map, marketplace, DAO revenue and governance, and ledger integrity.")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """The API's Swagger UI, its script and style served from /static/vendor (no CDN), with darker colours
        (static/docs.css) and the page's language, for accessibility."""
        page = get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: API",
                                   swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
                                   swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png")
        html = bytes(page.body).decode().replace("<html>", '<html lang="en">', 1)
        return HTMLResponse(html.replace("</head>", '<link rel="stylesheet" href="/static/docs.css">\n</head>', 1))

    @app.exception_handler(ViewError)
    async def view_error(_: Request, err: ViewError) -> JSONResponse:
        detail = {"code": err.code, "message": str(err), **({"hint": err.hint} if err.hint else {})}
        return JSONResponse({"error": detail}, status_code=err.status)

    for path, (name, title) in PAGES.items():
        app.add_api_route(path, _page(render_page(name, title)), methods=["GET"], include_in_schema=False)

    @app.get("/metrics", tags=["fleet"], response_class=Response)
    def metrics() -> Response:
        """The running fleet's numbers for Prometheus (text format 0.0.4): refusals by reason and, for the fleet's
        own robots, by DID; messages per robot; ingest lag; robots online and offline; tasks by state."""
        return Response(_fleet(view).metrics(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    @app.get("/api/status", tags=["fleet"])
    def status() -> dict[str, Any]:
        """Robots (simulated and real, online), tasks by state, revenue, refused messages and the ledger's size."""
        return view.status()

    @app.get("/api/robots", tags=["fleet"])
    def robots() -> list[dict[str, Any]]:
        """Every robot: where it is, what it does, its trust, reputation and earnings."""
        return view.robots()

    @app.get("/api/robots/{did}", tags=["fleet"])
    def robot(did: str) -> dict[str, Any]:
        """One robot: DID document, trust and reputation, telemetry, earnings and tasks."""
        return view.robot(did)

    @app.get("/api/robots/{did}/rating", tags=["fleet"])
    def rating(did: str) -> dict[str, Any]:
        """A robot's credit rating (0-100 and a letter, in the spirit of peaq's Machine Credit Rating) with what it is
        made of, and its profit and loss: recomputed from the ledger's signed entries (docs/dashboard.md)."""
        return view.rating(did)

    @app.get("/api/map", tags=["map"])
    def shared_map() -> dict[str, Any]:
        """The shared map: tiles (with PNG links), road states and places."""
        return _fleet(view).map()

    @app.get("/api/map/tiles/{ix}/{iy}.png", tags=["map"], response_class=Response)
    def tile(ix: int, iy: int) -> Response:
        """One occupancy tile as a greyscale PNG, north up."""
        return Response(_fleet(view).tile(ix, iy), media_type="image/png",
                        headers={"Cache-Control": "max-age=60"})

    @app.get("/api/tasks", tags=["marketplace"])
    def tasks(state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest tasks, optionally in one state (open, awarded, settled, refunded)."""
        return view.tasks(state, limit)

    @app.get("/api/revenue", tags=["dao"], response_class=Response)
    def revenue() -> Response:
        """The DAO's revenue by fleet hour and day, by robot (those that earned nothing too) and by member, with
        names; its accounts (docs/dashboard.md, "Revenue"). Serialized with orjson, skipping FastAPI's encoder:
        a large dict, asked for every few seconds by every open revenue page."""
        return Response(orjson.dumps(view.revenue()), media_type="application/json")

    @app.get("/api/revenue/tasks", tags=["dao"], response_class=Response)
    def revenue_tasks(limit: int = 1000) -> Response:
        """The newest settlements that paid the DAO, newest first: task, robot and its name, price, fee, earned
        and when (fleet time); serialized with orjson like /api/revenue."""
        return Response(orjson.dumps(view.revenue_tasks(limit)), media_type="application/json")

    @app.get("/api/revenue.csv", tags=["dao"], response_class=Response)
    def revenue_csv() -> Response:
        """Every task that paid the DAO, as CSV, naming each robot."""
        return Response(view.revenue_csv(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="revenue.csv"'})

    @app.get("/api/revenue/members.csv", tags=["dao"], response_class=Response)
    def revenue_members_csv() -> Response:
        """Every member's name, DID, shares and payouts, as CSV."""
        return Response(view.revenue_members_csv(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="revenue-members.csv"'})

    @app.get("/api/dao", tags=["dao"])
    def dao() -> dict[str, Any]:
        """Members and shares, claimable balances and vote nonces, the rules, the treasury."""
        return view.dao_summary()

    @app.get("/api/proposals", tags=["dao"])
    def proposals() -> list[dict[str, Any]]:
        """Every proposal, newest first, with its state, tally and votes."""
        return view.proposals()

    @app.post("/api/votes", tags=["dao"])
    async def vote(request: Request) -> dict[str, Any]:
        """Cast a vote: the body is a member's signed ``dao.vote`` envelope (see docs/dashboard.md)."""
        wire = await _signed_body(request)
        return await asyncio.to_thread(_fleet(view).vote, wire)

    @app.post("/api/proposals", tags=["dao"])
    async def propose(request: Request) -> dict[str, Any]:
        """Open a proposal: the body is a member's signed ``dao.propose`` envelope."""
        wire = await _signed_body(request)
        return await asyncio.to_thread(_fleet(view).propose, wire)

    @app.get("/api/ledger/checkpoint", tags=["ledger"])
    def checkpoint() -> dict[str, Any]:
        """The newest checkpoint the ledger's operator signed (C2SP signed note). ``public_key`` is only the key the
        database claims: verify the note against the ledger DID's key from the registry."""
        return view.checkpoint()

    @app.get("/api/ledger/entries/{seq}", tags=["ledger"])
    def entry(seq: int) -> dict[str, Any]:
        """One journal entry: its content (whose RFC 8785 JSON the leaf hash covers), leaf hash and signature."""
        return view.entry(seq)

    @app.get("/api/ledger/inclusion/{seq}", tags=["ledger"])
    def inclusion(seq: int, size: int | None = None) -> dict[str, Any]:
        """The entry's RFC 9162 inclusion proof in the tree of ``size`` entries (the newest checkpoint's by
        default), with that size and root."""
        return view.inclusion(seq, size)

    @app.get("/api/ledger/consistency", tags=["ledger"])
    def consistency(old: int | None = None, new: int | None = None) -> dict[str, Any]:
        """The RFC 9162 proof that the tree of ``new`` entries (the newest checkpoint's by default) extends the tree
        of ``old`` entries: how a browser or witness checks a new checkpoint against one it kept."""
        return view.consistency(old, new)

    @app.get("/api/fleet", tags=["fleet"])
    def fleet_descriptor() -> dict[str, Any]:
        """The fleet descriptor: the broker, which DID is the marketplace, the map, the dispatcher, the ledger, the DAO
        and the operator, whose commands count, the chargers, the roads' URL and schema, the clock and the city; with
        the operator's signed envelope of it (base64), to verify against the operator's key before trusting it."""
        signed = _resolver(view).descriptor()
        if signed is None:
            raise ViewError(404, "no_descriptor", "the fleet has not signed its descriptor yet")
        return signed.served()

    @app.get("/api/fleet/roads", tags=["fleet"], response_class=Response)
    def fleet_roads() -> Response:
        """The road graph (node-link JSON, the descriptor's ``roads_schema``); its SHA-256 is the descriptor's
        ``roads_sha256``."""
        signed = _resolver(view).descriptor()
        if signed is None:
            raise ViewError(404, "no_descriptor", "the fleet has not signed its descriptor yet")
        return Response(signed.roads, media_type="application/json", headers={"Cache-Control": "max-age=60"})

    @app.get("/1.0/identifiers/{did}", tags=["identity"], response_class=Response)
    def identifier(did: str, request: Request) -> Response:
        """Resolve a DID (W3C DID Resolution, HTTP(S) binding): the DID resolution result, its document and metadata
        (``versionId``, ``versionTime``, ...); ``?versionId=N`` or ``?versionTime=2026-05-01T12:00:00Z`` for an older
        version. 404 unknown, 400 invalid, 410 deactivated (docs/protocol.md, "Resolving DIDs over HTTP")."""
        answer = resolver.resolve(_resolver(view).registry, did, request.query_params.multi_items(),
                                  request.headers.get("accept"))
        return _answer(answer)

    @app.get("/1.0/identifiers/{did}/history", tags=["identity"], response_class=Response)
    def identifier_history(did: str) -> Response:
        """Every version of a DID, oldest first, each with its ``versionId``, ``versionTime`` (to the millisecond) and
        signed document, so a signature made before a rotation can be verified (a project extension of the binding)."""
        return _answer(resolver.history(_resolver(view).registry, did))

    @app.get("/api/events", tags=["fleet"])
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: ``status`` and ``robots`` every second, ``map`` when the road graph changes."""
        return StreamingResponse(_stream(view, request, stopping), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return app


def render_page(name: str, title: str) -> str:
    """A page: the shared layout (head, navigation, live status strip) around pages/NAME.html, with NAME.js."""
    layout = (HERE / "pages" / "layout.html").read_text()
    main = (HERE / "pages" / f"{name}.html").read_text()
    return layout.replace("{{title}}", title).replace("{{page}}", name).replace("{{main}}", main.rstrip("\n"))


def _page(html: str) -> Any:
    def page() -> HTMLResponse:
        return HTMLResponse(html)
    return page


def _fleet(view: LedgerView) -> FleetView:
    if not isinstance(view, FleetView):
        raise ViewError(404, "not_running", "this dashboard shows a ledger, not a running fleet",
                        "start the fleet with `depai up` to see it live")
    return view


def _resolver(view: LedgerView) -> resolver.ResolverView:
    if not isinstance(view, resolver.ResolverView):
        raise ViewError(404, "not_running", "this dashboard does not serve a fleet's DIDs or descriptor",
                        "start the fleet with `depai up` to resolve its DIDs here")
    return view


def _answer(answer: resolver.Answer) -> Response:
    body = b"" if answer.body is None else orjson.dumps(answer.body)
    return Response(body, status_code=answer.status, media_type=answer.content_type)


async def _signed_body(request: Request) -> bytes:
    wire = await request.body()
    if not wire:
        raise ViewError(400, "empty", "the request body must be a signed envelope",
                        "sign it with the member's key (the dashboard's DAO page does, in the browser)")
    if len(wire) > MAX_WRITE_BYTES:
        raise ViewError(413, "oversized", f"a signed request is at most {MAX_WRITE_BYTES} bytes")
    return wire


async def _stream(view: LedgerView, request: Request, stopping: threading.Event) -> AsyncIterator[bytes]:
    graph_version = None
    while not stopping.is_set() and not await request.is_disconnected():
        yield _event("status", await asyncio.to_thread(view.status))
        if isinstance(view, FleetView):
            yield _event("robots", await asyncio.to_thread(view.robots))
            version = view.live.map.graph_version if view.live.map is not None else 0
            if version != graph_version:
                graph_version = version
                yield _event("map", {"graph_version": version})
        await asyncio.sleep(EVENT_PERIOD_S)


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
