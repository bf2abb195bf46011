"""Metrics in the Prometheus text format, served over HTTP for a scraper."""

import urllib.error
import urllib.request

import pytest

from bus.metrics import Metrics, serve_metrics


def test_render_escapes_labels_and_sums() -> None:
    metrics = Metrics()
    metrics.describe("depai_x_total", "counter", "Things.")
    metrics.inc("depai_x_total", reason='say "hi"\\ then\nbye', did="a")
    metrics.inc("depai_x_total", 2, reason="b", did="a")
    text = metrics.render()
    assert "# TYPE depai_x_total counter" in text
    assert r'depai_x_total{did="a",reason="say \"hi\"\\ then\nbye"} 1' in text
    assert 'depai_x_total{did="a",reason="b"} 2' in text
    assert metrics.total("depai_x_total", did="a") == 3


def test_sums_by_one_label() -> None:
    metrics = Metrics()
    metrics.inc("depai_x_total", reason="replayed", did="a")
    metrics.inc("depai_x_total", 2, reason="replayed", did="b")
    metrics.inc("depai_x_total", reason="bad_signature", did="a")
    metrics.inc("depai_x_total", 5)  # no reason label: not counted under any reason
    assert metrics.by("depai_x_total", "reason") == {"bad_signature": 1, "replayed": 3}
    assert metrics.by("depai_unknown_total", "reason") == {}


def test_nested_sums_and_escaped_help() -> None:
    metrics = Metrics()
    metrics.describe("depai_x_total", "counter", "Line one\\two\nthree.")
    metrics.inc("depai_x_total", reason="replayed", did="b")
    metrics.inc("depai_x_total", 2, reason="bad_signature", did="a")
    metrics.inc("depai_x_total", reason="replayed")  # no DID: not in the nested sums
    assert metrics.nested("depai_x_total", "did", "reason") == {"a": {"bad_signature": 2}, "b": {"replayed": 1}}
    assert "# HELP depai_x_total Line one\\\\two\\nthree.\n" in metrics.render()


def test_metrics_are_served_over_http() -> None:
    metrics = Metrics()
    metrics.describe("depai_ingest_refused_total", "counter", "Refused.")
    metrics.inc("depai_ingest_refused_total", reason="bad_signature", did="did:key:z6Mk")
    server = serve_metrics(metrics)
    host, port = server.server_address[:2]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = response.read().decode()
        assert 'depai_ingest_refused_total{did="did:key:z6Mk",reason="bad_signature"} 1' in body
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://{host}:{port}/other", timeout=5)
        assert caught.value.code == 404
        caught.value.close()
    finally:
        server.shutdown()
        server.server_close()
