"""Every error the project raises on purpose is a DepaiError with a stable reason code.

One base means the CLI reports any layer's refusal one way (``code``, message, ``hint``) and a
service can count refusals by ``code``. A new error type that forgets the base fails here: the
explicit list names the errors of every layer, and the sweep finds any public exception class
defined anywhere in the project's packages.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

from bus.broker import BrokerError
from bus.client import BusClosed, BusError
from bus.ingest import IngestRefused
from bus.outbox import OutboxError, OutboxFull, OutboxLocked
from bus.schemas import SchemaError
from bus.trusted import Refused
from dao.actions import ActionError
from dao.dao import DaoError
from dao.shares import SharesError
from dashboard.server import DashboardError
from dashboard.view import ViewError
from identity.canonical import CanonicalError
from identity.envelope import EnvelopeRefused
from identity.errors import DepaiError, DidError, IdentityError, KeystoreError, ProofError, RegistryError
from launch.output import CliError, from_error
from ledger.checkpoint import NoteError
from ledger.db import DatabaseError, IntegrityError
from ledger.journal import IdempotencyConflict, InsufficientFunds, LedgerError
from ledger.merkle import ProofError as MerkleProofError
from marketplace.market import MarketError
from marketplace.policy import PolicyError
from robots.bridge.adapter import AdapterError
from robots.bridge.bridge import BridgeError
from robots.planner import NoRoute
from robots.tasks import IllegalTransition

ERRORS = [
    IdentityError, DidError, KeystoreError, RegistryError, ProofError, CanonicalError, EnvelopeRefused,
    BrokerError, BusError, BusClosed, IngestRefused, OutboxError, OutboxFull, OutboxLocked, SchemaError, Refused,
    LedgerError, IdempotencyConflict, InsufficientFunds, NoteError, MerkleProofError, DatabaseError, IntegrityError,
    MarketError, PolicyError, DaoError, SharesError, ActionError, ViewError, DashboardError,
    BridgeError, AdapterError, NoRoute, IllegalTransition, CliError,
]
# Refusals that callers long caught as ValueError (or RuntimeError) still are.
STILL_VALUE_ERRORS = [SchemaError, LedgerError, NoteError, MerkleProofError, IntegrityError, MarketError, PolicyError,
                      DaoError, SharesError, ActionError, ViewError, BridgeError, AdapterError, IllegalTransition]
STILL_RUNTIME_ERRORS = [DatabaseError, DashboardError]

PACKAGES = ["identity", "bus", "sim", "spatial", "robots", "marketplace", "ledger", "dao", "dashboard", "launch"]
# Signals that never leave the module pair that uses them (caught and turned into a DepaiError there).
INTERNAL = {"identity.registry_db.VersionTaken"}
CODE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: error.__name__)
def test_every_layer_error_is_a_depai_error_with_a_code(error: type[Exception]) -> None:
    assert issubclass(error, DepaiError)
    assert CODE.fullmatch(error.code), f"{error.__name__}.code {error.code!r} is not a snake_case reason"


@pytest.mark.parametrize("error", STILL_VALUE_ERRORS, ids=lambda error: error.__name__)
def test_refusals_caught_as_value_errors_still_are(error: type[Exception]) -> None:
    assert issubclass(error, ValueError)


@pytest.mark.parametrize("error", STILL_RUNTIME_ERRORS, ids=lambda error: error.__name__)
def test_failures_caught_as_runtime_errors_still_are(error: type[Exception]) -> None:
    assert issubclass(error, RuntimeError)


def _project_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
                        and not name.startswith("_")):
                    found[f"{module.__name__}.{name}"] = value
    return found


def test_no_public_exception_class_in_the_project_forgets_the_base() -> None:
    found = _project_exceptions()
    assert {f"{error.__module__}.{error.__qualname__}" for error in ERRORS} <= set(found)
    strays = sorted(name for name, error in found.items() if not issubclass(error, DepaiError) and name not in INTERNAL)
    assert strays == [], f"make these DepaiError subclasses (with a code): {strays}"
    blank = sorted(name for name, error in found.items() if name not in INTERNAL and not getattr(error, "code", ""))
    assert blank == []


def test_the_reason_given_at_the_raise_is_the_code() -> None:
    assert DaoError("already_executed", "proposal p1 was executed already").code == "already_executed"
    assert MarketError("unknown_task", "no task t1").code == "unknown_task"
    assert BridgeError("wrong_key", "not its key", "use the enrolled key").code == "wrong_key"
    assert AdapterError("oversized", "too big").code == "oversized"
    assert IngestRefused("rate_limited", "did:key:z6Mk", "too fast").code == "rate_limited"
    assert LedgerError("unknown account 'x'").code == "ledger_refused"
    assert InsufficientFunds("account a holds 0").code == "insufficient_funds"
    assert SchemaError("task body: must contain id").code == "schema_invalid"


def test_messages_read_as_before() -> None:
    """Errors whose hint travels apart (a JSON field, a ``hint:`` line) keep str() to the message alone."""
    view = ViewError(404, "unknown_robot", "no robot did:x", hint="list them at /api/robots")
    assert (str(view), view.status, view.code, view.hint) == ("no robot did:x", 404, "unknown_robot",
                                                             "list them at /api/robots")
    bridge = BridgeError("unknown_did", "did:x is not registered", "enroll it first")
    assert (str(bridge), bridge.hint) == ("did:x is not registered", "enroll it first")
    cli = CliError("bad --port", code="bad_port", hint="pass a number", exit_code=2)
    assert (str(cli), cli.code, cli.hint, cli.exit_code) == ("bad --port", "bad_port", "pass a number", 2)
    assert str(DaoError("bad_action", "spend.amount must be a positive integer")) == \
        "spend.amount must be a positive integer"
    assert DaoError("bad_action", "x").hint is None


def test_a_cli_error_reported_through_the_common_handler_keeps_its_exit_code() -> None:
    cli = CliError("no fleet here", code="no_fleet", hint="start one", exit_code=3)
    assert from_error(cli) is cli
    refused = from_error(MarketError("unknown_task", "no task t1"))
    assert (str(refused), refused.code, refused.exit_code) == ("no task t1", "unknown_task", 1)
