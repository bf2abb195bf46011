"""Map tiles on the wire (the ``map.tile`` body) and as PNG images for people.

A tile is ``size`` x ``size`` cells of ``resolution`` metres. Its (x, y) are tile
indices: its world origin (the corner of cell (0, 0)) is
(x * size * resolution, y * size * resolution), and cell (ix, iy) covers
[origin_x + ix * resolution, origin_x + (ix + 1) * resolution) and likewise in y.
In memory cells are a uint8 array indexed [ix, iy]. On the wire ``data`` is
base64 of zlib of size * size bytes, row-major with rows = iy (y increasing) and
columns = ix (x increasing): the byte of cell (ix, iy) is data[iy * size + ix].
One byte per cell, by layer:

- "belief": the believed state: 0 unknown, 1 free, 2 occupied.
- "probability": round(255 * p) with p = 1 / (1 + exp(-L)) from the fused
  log-odds L; 128 is unknown (L = 0), 255 certainly occupied, 0 certainly free.
"""

from __future__ import annotations

import base64
import binascii
import math
import operator
import struct
import zlib
from typing import Any

import numpy as np

from bus.schemas import validate_body
from spatial.grid import FREE, OCCUPIED, UNKNOWN

BELIEF, PROBABILITY = "belief", "probability"
LAYERS = (BELIEF, PROBABILITY)
ENCODING = "zlib+base64"
MAX_SIZE = 1024  # the protocol's largest tile side
UNKNOWN_CELL, FREE_CELL, OCCUPIED_CELL = 0, 1, 2  # "belief" layer bytes
_BELIEF_BYTES = {UNKNOWN: UNKNOWN_CELL, FREE: FREE_CELL, OCCUPIED: OCCUPIED_CELL}  # by the grid's int8 state
_BELIEF_GREY = np.array([128, 255, 0], dtype=np.uint8)  # unknown mid grey, free white, occupied black
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TileKey = tuple[int, int]


def tile_origin(key: TileKey, size: int, resolution: float) -> tuple[float, float]:
    """The world (x, y) of the corner of cell (0, 0) of tile ``key``."""
    return (key[0] * size * resolution, key[1] * size * resolution)


def belief_cells(state: np.ndarray) -> np.ndarray:
    """The grid's believed int8 states (1 occupied, -1 free, 0 unknown) as "belief" layer bytes."""
    state = np.asarray(state)
    if not np.isin(state, list(_BELIEF_BYTES)).all():
        raise ValueError("believed states must be -1 (free), 0 (unknown) or 1 (occupied)")
    cells = np.zeros(state.shape, dtype=np.uint8)
    for believed, byte in _BELIEF_BYTES.items():
        cells[state == believed] = byte
    return cells


def probability_cells(log_odds: np.ndarray) -> np.ndarray:
    """Fused log-odds as "probability" layer bytes: round(255 * sigmoid(L)), 128 for L = 0."""
    log_odds = np.asarray(log_odds, dtype=np.float64)
    if np.isnan(log_odds).any():
        raise ValueError("log-odds must not be NaN")
    p = 0.5 * (1.0 + np.tanh(log_odds / 2))  # the logistic function, without exp overflow
    return np.rint(255.0 * p).astype(np.uint8)


def encode_tile(layer: str, key: TileKey, version: int, resolution: float, cells: np.ndarray) -> dict[str, Any]:
    """The ``map.tile`` body for one tile of ``layer``: ``cells`` is uint8 (size, size) indexed [ix, iy]."""
    _check_cells(layer, cells)
    version = operator.index(version)
    if version < 0:
        raise ValueError(f"version must be >= 0, got {version}")
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be positive, got {resolution!r}")
    raw = np.ascontiguousarray(cells.T).tobytes()
    return {
        "layer": layer,
        "x": operator.index(key[0]),
        "y": operator.index(key[1]),
        "version": version,
        "resolution": float(resolution),
        "size": len(cells),
        "encoding": ENCODING,
        "data": base64.b64encode(zlib.compress(raw)).decode("ascii"),
    }


def decode_tile(body: dict[str, Any]) -> tuple[TileKey, int, float, np.ndarray]:
    """(key, version, resolution, cells [ix, iy]) of a ``map.tile`` body; ValueError names what is wrong with it."""
    validate_body("map.tile", body)
    if body["layer"] not in LAYERS:
        raise ValueError(f"unknown tile layer {body['layer']!r}; expected one of {LAYERS}")
    if not math.isfinite(body["resolution"]):
        raise ValueError(f"tile resolution must be finite, got {body['resolution']!r}")
    size = body["size"]
    try:
        packed = base64.b64decode(body["data"], validate=True)
    except binascii.Error as err:
        raise ValueError(f"tile data is not base64: {err}") from None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed, size * size + 1)  # bounded: a zlib bomb stops here
    except zlib.error as err:
        raise ValueError(f"tile data is not zlib: {err}") from None
    if len(raw) != size * size or not inflater.eof or inflater.unused_data:
        raise ValueError(f"tile data must inflate to exactly {size} x {size} = {size * size} bytes and end there")
    cells = np.frombuffer(raw, dtype=np.uint8).reshape(size, size).T.copy()
    _check_cells(body["layer"], cells)
    return ((body["x"], body["y"]), body["version"], float(body["resolution"]), cells)


def tile_png(cells: np.ndarray, layer: str) -> bytes:
    """An 8-bit grayscale PNG of a tile, north up (first row = highest y); dark means occupied in both layers."""
    _check_cells(layer, cells)
    grey = _BELIEF_GREY[cells] if layer == BELIEF else 255 - cells
    rows = np.ascontiguousarray(grey.T[::-1])  # [iy, ix], highest iy first
    size = len(rows)
    scanlines = np.hstack([np.zeros((size, 1), dtype=np.uint8), rows]).tobytes()  # filter type 0 per row
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _check_cells(layer: str, cells: np.ndarray) -> None:
    """Refuse anything but a square uint8 tile of a known layer, with belief bytes in 0..2."""
    if layer not in LAYERS:
        raise ValueError(f"unknown tile layer {layer!r}; expected one of {LAYERS}")
    if not isinstance(cells, np.ndarray) or cells.dtype != np.uint8:
        raise ValueError("tile cells must be a uint8 numpy array")
    if cells.ndim != 2 or cells.shape[0] != cells.shape[1] or not 1 <= len(cells) <= MAX_SIZE:
        raise ValueError(f"tile cells must be square, 1 to {MAX_SIZE} a side, got shape {cells.shape}")
    if layer == BELIEF and cells.max() > OCCUPIED_CELL:
        raise ValueError(f"belief cells must be 0 (unknown), 1 (free) or 2 (occupied), found {cells.max()}")
