"""``depai bridge status NAME``: how the running fleet sees one robot, for the robot's maker.

It asks the fleet's dashboard (``GET /api/robots/{did}``; the URL ``depai up`` wrote to ``STATE/dashboard.json``,
or ``--dashboard URL``) and prints the robot's state (``offline`` after its verified death or 10 s of fleet time
without a word), when it was last heard, what the fleet verified from it, and every refusal of its messages with
the reason and what to do about it. Refusals are counted for the fleet's registered robots only: a message whose
issuer the fleet could not resolve is counted under its reason alone, never under a DID.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from launch.home import Home
from launch.output import EXIT_IO, EXIT_NOT_FOUND, EXIT_OK, CliError, emit

DASHBOARD_INFO = "dashboard.json"  # where the running fleet's dashboard answers, written by depai up

# What to do about the refusals a maker meets most (docs/protocol.md has every reason).
ADVICE = {
    "bad_signature": "the signature does not verify: sign the exact canonical bytes with the robot's key (check "
                     "the key file is the enrolled one; compare with the worked example in docs/protocol.md)",
    "stale_sequence": "the sequence number went backwards by 1024 or more: start seq at wall-clock microseconds "
                      "and never reset it",
    "replayed": "a sequence number the fleet already accepted: harmless for a QoS 1 duplicate; otherwise never "
                "reuse a seq (after a restart, continue above the last one)",
    "wrong_topic": "published outside the robot's own topic root or on the wrong channel: use <topic root>/<channel "
                   "of the kind> from its DID document",
    "no_birth": "a message before a live birth: publish a birth after every connect and wait for its PUBACK",
    "stale_epoch": "a death naming an epoch no birth opened: send the death of your latest birth's epoch",
    "future_dated": "issued ahead of the fleet's clock: synchronize the robot's clock (NTP)",
    "expired": "received after it expired: do not resend old messages; check the robot's clock",
    "implausible": "the motion is physically impossible for its declared limits (too fast, a jump, t out of "
                   "order): send real, timely readings; declare the real max speed when enrolling",
    "rate_limited": "over 50 messages a second: send less often",
    "schema_invalid": "the body does not match its kind's schema: validate against docs/asyncapi.json",
    "unknown_key": "the kid is not one of the DID's keys: send the kid of the enrolled key (key-1)",
    "key_rotated": "signed with a key rotated out: load the new seed and kid",
}
GENERIC = "see docs/protocol.md, 'What the fleet checks', for this reason"


def add_status_parser(actions: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register ``depai bridge status``."""
    status = actions.add_parser("status", parents=[parent], help="how the running fleet sees an enrolled robot",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("name", help="the enrolled robot's name (or its DID)")
    status.add_argument("--state", help="the fleet's state directory (default: HOME/fleet)")
    status.add_argument("--dashboard", metavar="URL", help="the fleet's dashboard (default: the one depai up "
                                                          "started for --state)")
    status.set_defaults(handler=cmd_status)


def dashboard_info(state: Path, url: str) -> None:
    """Write where the running fleet's dashboard answers, for ``depai bridge status``."""
    (state / DASHBOARD_INFO).write_text(json.dumps({"url": url}))


def cmd_status(args: argparse.Namespace, home: Home) -> int:
    """Print the robot's state, when it was last heard, and its refusals with what to do."""
    state = Path(args.state).expanduser() if args.state else home.root / "fleet"
    name, did = _robot(args.name, state)
    base = (args.dashboard or _dashboard_url(state)).rstrip("/")
    robot = _get(f"{base}/api/robots/{urllib.parse.quote(did, safe=':')}", name, base)
    refusals = {reason: int(n) for reason, n in sorted((robot.get("refusals") or {}).items(), key=lambda r: -r[1])}
    out = {"name": name, "did": did, "dashboard": base, "state": robot.get("state"), "online": robot.get("online"),
           "seen_s": robot.get("seen_s"), "heard_ago_s": robot.get("heard_ago_s"),
           "offline_after_s": robot.get("offline_after_s"), "messages": robot.get("messages") or {},
           "refusals": refusals, "advice": {reason: ADVICE.get(reason, GENERIC) for reason in refusals}}
    emit(out, as_json=args.json, text=_text(out))
    return EXIT_OK


def _text(out: dict[str, Any]) -> str:
    seen = out["seen_s"]
    heard = ("never heard" if out["heard_ago_s"] is None else
             f"last heard {out['heard_ago_s']:g} s ago (fleet time)"
             + (f", telemetry of {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(seen))} UTC" if seen else ""))
    lines = [f"{out['name']} ({out['did']}): {out['state']}; {heard}"]
    if out["state"] == "offline":
        lines.append(f"  offline: its death was verified, or nothing came from it for {out['offline_after_s']:g} s; "
                     f"a new birth brings it back (`depai bridge run {out['name']} ...`)")
    elif out["state"] == "unheard":
        lines.append(f"  the fleet has heard nothing from it yet: start `depai bridge run {out['name']} ...`")
    messages = ", ".join(f"{kind} {n}" for kind, n in sorted(out["messages"].items())) or "none"
    lines.append(f"  verified from it: {messages}")
    if not out["refusals"]:
        lines.append("  refused: nothing")
    for reason, n in out["refusals"].items():
        lines.append(f"  refused {n} x {reason}: {out['advice'][reason]}")
    return "\n".join(lines)


def _robot(name: str, state: Path) -> tuple[str, str]:
    """(name, DID) of an enrolled robot, or of a DID given as it is."""
    if name.startswith("did:"):
        return name, name
    if Path(name).name != name or name.startswith("."):
        raise CliError(f"{name!r} is not a robot name", code="bad_name", hint="pass the name it was enrolled with")
    record = state / "bridges" / f"{name}.json"
    try:
        return name, json.loads(record.read_text())["did"]
    except (OSError, ValueError, KeyError):
        raise CliError(f"no robot named {name!r} is enrolled in {state}", code="not_enrolled",
                       exit_code=EXIT_NOT_FOUND, hint=f"depai bridge enroll {name} --state {state}, or pass its "
                                                      "DID") from None


def _dashboard_url(state: Path) -> str:
    try:
        return str(json.loads((state / DASHBOARD_INFO).read_text())["url"])
    except (OSError, ValueError, KeyError):
        raise CliError(f"no running fleet's dashboard is known in {state}", code="not_running",
                       exit_code=EXIT_NOT_FOUND, hint="start it with `depai up --speed 1`, or pass --dashboard "
                                                      "http://HOST:PORT") from None


def _get(url: str, name: str, base: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as err:
        with err:
            if err.code == 404:
                raise CliError(f"the fleet at {base} does not know {name}", code="unknown_robot",
                               exit_code=EXIT_NOT_FOUND, hint="(re)start `depai up --speed 1` so the fleet admits "
                                                              "it") from None
            raise CliError(f"the dashboard at {base} answered {err.code}", code="dashboard_error",
                           exit_code=EXIT_IO) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise CliError(f"the fleet's dashboard at {base} does not answer: {err}", code="not_running",
                       exit_code=EXIT_NOT_FOUND, hint="is `depai up` running? or pass --dashboard URL") from None
