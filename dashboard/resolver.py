"""The fleet's DID resolver (W3C DID Resolution 1.0, its HTTP(S) binding) as plain functions over a ``DidRegistry``.

``resolve(registry, did, options, accept)`` is ``GET /1.0/identifiers/{did}``: a DID resolution result
(``application/did-resolution``) with the DID document in force and its metadata, or an older version with
``?versionId=N`` or ``?versionTime=2026-05-01T12:00:00Z``; errors carry an RFC 9457 error object in
``didResolutionMetadata.error`` and the status code the binding gives its type (400 invalid DID or options,
404 not found, 406 representation not supported, 501 method or feature not supported); a deactivated DID
answers 410 with ``deactivated: true`` and no document. ``history(registry, did)`` is the project's
extension ``GET /1.0/identifiers/{did}/history``: every version, oldest first, so a verifier can check a
signature made before a rotation (identity/http_resolver.py is the client). docs/protocol.md ("Resolving
DIDs over HTTP") is the reference.

Times: a version's time is when the registry put it in force (its clock, not the document's). The resolution
metadata gives it in the spec's form, UTC to the whole second; the history gives it to the millisecond (a
valid XML dateTime too), because a key's window must be exact to judge a signature made in the second of a
rotation. ``?versionTime=T`` resolves the newest version whose time, at T's precision, is not after T, so a
``versionTime`` copied from any answer resolves that version (or one made later in the same second: use
``versionId`` to be exact).

``ResolverView`` is the dashboard's ``FleetView`` with what these routes need beside it: the registry and the
fleet descriptor the operator signed (``SignedDescriptor``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from dashboard.view import FleetView
from identity.did import parse_did
from identity.errors import DepaiError, DidError, RegistryError
from identity.proof import timestamp
from identity.registry import DidRegistry, Resolution

RESULT_CONTEXT = "https://w3id.org/did-resolution/v1"
RESULT_TYPE = "application/did-resolution"  # a whole DID resolution result (DID Resolution 1.0, section 9)
LEGACY_RESULT_TYPE = 'application/ld+json;profile="https://w3id.org/did-resolution"'  # earlier drafts' name for it
DOCUMENT_TYPE = "application/did+ld+json"  # our documents carry an @context: the JSON-LD representation
DOCUMENT_TYPES = (DOCUMENT_TYPE, "application/did+json", "application/did", "application/ld+json")
ERROR_BASE = "https://www.w3.org/ns/did#"
OPTIONS = ("versionId", "versionTime", "expandRelativeUrls")  # expandRelativeUrls: our documents have no relative URLs

# The HTTP(S) binding's status code for each error type (DID Resolution 1.0, section 12.1).
STATUS = {"INVALID_DID": 400, "INVALID_OPTIONS": 400, "NOT_FOUND": 404, "REPRESENTATION_NOT_SUPPORTED": 406,
          "METHOD_NOT_SUPPORTED": 501, "FEATURE_NOT_SUPPORTED": 501, "INTERNAL_ERROR": 500}
TITLES = {"INVALID_DID": "invalid DID", "INVALID_OPTIONS": "invalid resolution options",
          "NOT_FOUND": "DID not found", "REPRESENTATION_NOT_SUPPORTED": "representation not supported",
          "METHOD_NOT_SUPPORTED": "DID method not supported",
          "FEATURE_NOT_SUPPORTED": "resolution option not supported", "INTERNAL_ERROR": "internal error"}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, JSON body and its media type."""

    status: int
    body: dict[str, Any] | None
    content_type: str


class ResolutionFailed(DepaiError, ValueError):
    """A resolution that ends in an error of ``kind`` (a key of ``STATUS``)."""

    code = "resolution_failed"

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail, code=kind)
        self.kind, self.detail = kind, detail


# --- resolution ------------------------------------------------------------------------------------------------

def resolve(registry: DidRegistry, did: str, options: Sequence[tuple[str, str]] = (),
            accept: str | None = None) -> Answer:
    """``GET /1.0/identifiers/{did}``: the DID resolution result for ``did`` with the query's ``options`` (pairs,
    as repeated in the query) and the request's ``Accept`` header."""
    try:
        representation = _representation(accept)
        version = _selected(registry, did, options)
    except ResolutionFailed as failure:
        return _failure(failure)
    versions = version[1]
    chosen = version[0]
    metadata = document_metadata(versions, chosen)
    if chosen.deactivated:  # DID Resolution 1.0, 4.4 step 5.2: no document, deactivated: true; 410 (12.1)
        return Answer(410, _result(None, {}, metadata), RESULT_TYPE)
    if representation in DOCUMENT_TYPES:  # only the document, in the representation asked for
        return Answer(200, chosen.document, representation)
    return Answer(200, _result(chosen.document, {"contentType": DOCUMENT_TYPE}, metadata), representation)


def history(registry: DidRegistry, did: str) -> Answer:
    """``GET /1.0/identifiers/{did}/history`` (a project extension): every version of ``did``, oldest first.

    A version that deactivated the DID carries the signed deactivation statement (``{"id", "deactivated": true,
    "proof"}``) as its ``didDocument``, so its proof can be checked like any other version's."""
    try:
        versions = _versions(registry, did)
    except ResolutionFailed as failure:
        return Answer(STATUS[failure.kind], {"did": did, "error": error_object(failure)}, "application/json")
    return Answer(200, {"did": did, "versions": [
        {"versionId": str(v.version), "versionTime": time_of(v.valid_from_ms, exact=True), "didDocument": v.document,
         "deactivated": v.deactivated} for v in versions]}, "application/json")


def document_metadata(versions: list[Resolution], chosen: Resolution) -> dict[str, Any]:
    """DID document metadata (DID Resolution 1.0, 4.3) of version ``chosen`` among ``versions`` (oldest first):
    ``created``, ``updated`` (from the second version on), ``versionId``, ``versionTime`` (when it took effect),
    ``deactivated``, and for an older version ``nextVersionId`` and ``nextUpdate``."""
    metadata: dict[str, Any] = {"created": time_of(versions[0].valid_from_ms), "versionId": str(chosen.version),
                                "versionTime": time_of(chosen.valid_from_ms), "deactivated": chosen.deactivated}
    if chosen.version > 1:
        metadata["updated"] = time_of(chosen.valid_from_ms)
    later = [v for v in versions if v.version > chosen.version]
    if later:
        metadata["nextVersionId"] = str(later[0].version)
        metadata["nextUpdate"] = time_of(later[0].valid_from_ms)
    return metadata


def error_object(failure: ResolutionFailed) -> dict[str, str]:
    """The RFC 9457 error object of DID Resolution 1.0, section 11: ``type`` (a URL), ``title``, ``detail``."""
    return {"type": ERROR_BASE + failure.kind, "title": TITLES[failure.kind], "detail": failure.detail}


def time_of(ms: int, *, exact: bool = False) -> str:
    """``ms`` since the epoch as an XML dateTime in UTC: whole seconds (the spec's form), or to the millisecond."""
    whole = timestamp(ms)  # 2026-05-01T12:00:05Z
    return f"{whole[:-1]}.{ms % 1000:03d}Z" if exact else whole


def parse_time(text: str) -> int:
    """The last millisecond ``text`` (an XML dateTime with a zone) covers: ``...:05Z`` is up to 5.999 s, ``...:05.25Z``
    is 5.250 s exactly. ValueError if it is not one."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a dateTime like 2026-05-01T12:00:00Z")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    ms = int(moment.replace(microsecond=0).timestamp()) * 1000 + moment.microsecond // 1000
    return ms if match.group(1) else ms + 999


def _selected(registry: DidRegistry, did: str, options: Sequence[tuple[str, str]]) -> tuple[Resolution,
                                                                                             list[Resolution]]:
    """The version the options ask for (the newest by default), and every version."""
    names = [name for name, _ in options]
    unknown = sorted(set(names) - set(OPTIONS))
    if unknown:
        raise ResolutionFailed("FEATURE_NOT_SUPPORTED", f"this resolver does not support the option(s) "
                                                        f"{', '.join(unknown)}; it supports {', '.join(OPTIONS)}")
    given = dict(options)
    if len(given) != len(names):
        raise ResolutionFailed("INVALID_OPTIONS", "an option is given twice")
    if "versionId" in given and "versionTime" in given:
        raise ResolutionFailed("INVALID_OPTIONS", "give versionId or versionTime, not both")
    if given.get("expandRelativeUrls", "false") not in ("true", "false"):
        raise ResolutionFailed("INVALID_OPTIONS", "expandRelativeUrls is true or false")
    at_ms = None
    if "versionTime" in given:
        try:
            at_ms = parse_time(given["versionTime"])
        except ValueError as err:
            raise ResolutionFailed("INVALID_OPTIONS", f"versionTime: {err}") from None
    versions = _versions(registry, did)
    if "versionId" in given:
        chosen = next((v for v in versions if str(v.version) == given["versionId"]), None)
        if chosen is None:
            raise ResolutionFailed("NOT_FOUND", f"{did} has no version {given['versionId']!r}; its versions are "
                                                f"1 to {versions[-1].version}")
        return chosen, versions
    if at_ms is not None:
        in_force = [v for v in versions if v.valid_from_ms <= at_ms]
        if not in_force:
            raise ResolutionFailed("NOT_FOUND", f"{did} was not registered yet at {given['versionTime']}; it was "
                                                f"created {time_of(versions[0].valid_from_ms)}")
        return in_force[-1], versions
    return versions[-1], versions


def _versions(registry: DidRegistry, did: str) -> list[Resolution]:
    try:
        parse_did(did)
    except DidError as err:
        kind = "METHOD_NOT_SUPPORTED" if err.code == "did_method" else "INVALID_DID"
        raise ResolutionFailed(kind, str(err)) from None
    try:
        return registry.history(did)
    except RegistryError as err:
        if err.code == "unknown_did":
            raise ResolutionFailed("NOT_FOUND", f"{did} is not in this fleet's registry") from None
        raise ResolutionFailed("INTERNAL_ERROR", str(err)) from None


def _representation(accept: str | None) -> str:
    """What the ``Accept`` header asks for: the whole result (its media type) or only the document (its
    representation); REPRESENTATION_NOT_SUPPORTED when it names neither."""
    ranges = []
    for position, item in enumerate((accept or "").split(",")):
        kind, *params = [part.strip() for part in item.split(";")]
        if not kind:
            continue
        quality = 1.0
        profile = ""
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif key.strip().lower() == "profile":
                profile = value.strip().strip('"')
        if quality > 0:
            ranges.append((-quality, position, kind.lower(), profile))
    if not ranges:
        return RESULT_TYPE
    for _, _, kind, profile in sorted(ranges):
        if kind == "application/ld+json" and profile.startswith("https://w3id.org/did-resolution"):
            return LEGACY_RESULT_TYPE
        if kind in (RESULT_TYPE, "application/json", "*/*", "application/*"):
            return RESULT_TYPE
        if kind in DOCUMENT_TYPES:
            return kind
    raise ResolutionFailed("REPRESENTATION_NOT_SUPPORTED",
                           f"Accept: {accept} names no representation this resolver has; it serves "
                           f"{RESULT_TYPE} (the whole result) and {', '.join(DOCUMENT_TYPES)} (the document)")


def _result(document: dict[str, Any] | None, resolution: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    return {"@context": RESULT_CONTEXT, "didDocument": document, "didResolutionMetadata": resolution,
            "didDocumentMetadata": metadata}


def _failure(failure: ResolutionFailed) -> Answer:
    return Answer(STATUS[failure.kind], _result(None, {"error": error_object(failure)}, {}), RESULT_TYPE)


# --- what the dashboard serves beside the resolver ---------------------------------------------------------------

@dataclass(frozen=True)
class SignedDescriptor:
    """The fleet descriptor as the operator signed it: its body, the envelope's exact bytes, who signed it, and the
    road graph's JSON whose SHA-256 the body names (``roads_sha256``)."""

    body: dict[str, Any]
    envelope: bytes
    operator: str
    roads: bytes

    @classmethod
    def of(cls, envelope: bytes, operator: str, roads: bytes) -> SignedDescriptor:
        """The descriptor sealed in ``envelope`` (its body exactly as signed) by ``operator``, pinning ``roads``."""
        return cls(orjson.loads(envelope)["body"], envelope, operator, roads)

    def served(self) -> dict[str, Any]:
        """``GET /api/fleet``: the descriptor, the signed envelope (base64 of its bytes) and the operator's DID."""
        return {"descriptor": self.body, "envelope": base64.b64encode(self.envelope).decode(),
                "operator": self.operator}


class ResolverView(FleetView):
    """A ``FleetView`` that also resolves the fleet's DIDs (``registry``) and serves the signed fleet descriptor
    (``descriptor()``: None until there is one)."""

    def __init__(self, *args: Any, registry: DidRegistry, descriptor: Callable[[], SignedDescriptor | None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registry, self.descriptor = registry, descriptor

