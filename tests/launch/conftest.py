"""The launch tests start ``depai up`` with a broker any free port: ``DEPAI_BROKER_PORT=0`` for the session.

``depai up``'s broker listens on a fixed port by default (18830, launch/broker_info.py), so two fleets on one
machine need different ports. Test sessions run side by side (and a developer's own fleet may hold 18830), so
here every ``depai up`` a test starts takes a free one instead, as it did before the port was fixed; a test that
means the default sets the variable itself (tests/launch/test_broker_admission.py checks the default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def any_free_broker_port() -> Iterator[None]:
    """Session-wide, so a module's fleet (set up before any function fixture) gets it too."""
    before = os.environ.get("DEPAI_BROKER_PORT")
    os.environ["DEPAI_BROKER_PORT"] = "0"
    yield
    if before is None:
        os.environ.pop("DEPAI_BROKER_PORT", None)
    else:
        os.environ["DEPAI_BROKER_PORT"] = before
