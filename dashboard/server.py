"""Serve the dashboard from a background thread of the fleet's process (uvicorn), and stop it cleanly."""

from __future__ import annotations

import threading
import time

import uvicorn

from dashboard.app import create_app
from dashboard.view import LedgerView
from identity.errors import DepaiError


class DashboardError(DepaiError, RuntimeError):
    """The dashboard could not start (the port is taken, say); the message says what to do."""

    code = "dashboard_unavailable"


class DashboardServer:
    """The dashboard app on ``host:port`` (port 0: any free port), in a daemon thread."""

    def __init__(self, view: LedgerView, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.stopping = threading.Event()
        config = uvicorn.Config(create_app(view, stopping=self.stopping), host=host, port=port, log_level="error",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dashboard", daemon=True)
        # The revenue projection reads the whole ledger once; do it now, not in the first visitor's request.
        self._warm_up = threading.Thread(target=view.book.refresh, name="dashboard-warm-up", daemon=True)
        self.host = host

    def start(self, timeout: float = 10.0) -> DashboardServer:
        """Start serving; DashboardError if it is not up within ``timeout`` seconds."""
        self._warm_up.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DashboardError(f"the dashboard could not listen on {self.host}:{self._server.config.port}; "
                                     "is the port taken? choose another with --port")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        """Where the dashboard is served."""
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}/"

    def stop(self) -> None:
        """End live streams, then the server."""
        self.stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._warm_up.join()
