"""Counters and gauges exposed in the Prometheus text exposition format (version 0.0.4).

Small on purpose: the ingest pipeline counts accepted messages by kind and
refusals by reason (and by DID only for machines registered in the fleet, so a
forger cannot add series), and a scraper (or the dashboard) reads ``render()``.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LabelSet = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    """A label value escaped as the exposition format requires (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    """A HELP docstring escaped as the exposition format requires (backslash, newline)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    """A sample value as the format writes it: an integer without a fraction, else Python's float text."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) else repr(float(value))


class Metrics:
    """Thread-safe named counters and gauges with labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[LabelSet, float]] = defaultdict(dict)

    def describe(self, name: str, kind: str, help_text: str) -> None:
        """Declare a metric's type (``counter`` or ``gauge``) and help line."""
        self._help[name] = (kind, help_text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the counter ``name`` with ``labels``."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set the gauge ``name`` with ``labels`` to ``value``."""
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def value(self, name: str, **labels: str) -> float:
        """The current value of one series (0 if never touched)."""
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        with self._lock:
            return sum(v for key, v in self._values.get(name, {}).items() if wanted <= set(key))

    def by(self, name: str, label: str) -> dict[str, float]:
        """The sums of ``name`` per value of one label (e.g. refusals by reason), in label order."""
        sums: dict[str, float] = {}
        with self._lock:
            for key, v in self._values.get(name, {}).items():
                value = dict(key).get(label)
                if value is not None:
                    sums[value] = sums.get(value, 0.0) + v
        return dict(sorted(sums.items()))

    def nested(self, name: str, outer: str, inner: str) -> dict[str, dict[str, float]]:
        """The sums of ``name`` per value of ``outer``, then per value of ``inner`` (refusals by DID, then by
        reason), both in label order; series missing either label are left out."""
        sums: dict[str, dict[str, float]] = {}
        with self._lock:
            for key, v in self._values.get(name, {}).items():
                labels = dict(key)
                if outer in labels and inner in labels:
                    row = sums.setdefault(labels[outer], {})
                    row[labels[inner]] = row.get(labels[inner], 0.0) + v
        return {k: dict(sorted(row.items())) for k, row in sorted(sums.items())}

    def render(self) -> str:
        """Every metric in the Prometheus text format."""
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._values):
                kind, help_text = self._help.get(name, ("untyped", name))
                lines.append(f"# HELP {name} {_escape_help(help_text)}")
                lines.append(f"# TYPE {name} {kind}")
                for key, value in sorted(self._values[name].items()):
                    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                    number = _number(value)
                    lines.append(f"{name}{{{labels}}} {number}" if labels else f"{name} {number}")
        return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def serve_metrics(metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve ``metrics`` at ``http://host:port/metrics`` from a daemon thread; ``server_address`` says where.

    Stop it with ``shutdown()`` then ``server_close()``.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep scrapes off the terminal
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="depai-metrics", daemon=True).start()
    return server
