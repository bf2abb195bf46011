"""Map tiles: the wire encoding round-trips and refuses tampering; the PNG is valid, north up and legible."""

import base64
import struct
import zlib

import numpy as np
import pytest

from bus.schemas import validate_body
from spatial.tiles import belief_cells, decode_tile, encode_tile, probability_cells, tile_origin, tile_png


def belief_tile(size: int = 4) -> np.ndarray:
    cells = np.zeros((size, size), dtype=np.uint8)  # unknown
    cells[0, :] = 1  # the column ix = 0 is free
    cells[2, 3] = 2  # one occupied cell at ix = 2, iy = 3
    return cells


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk as (type, data), checking each CRC on the way."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    found, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, data = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + data), f"bad CRC on {kind!r}"
        found.append((kind, data))
        at += 12 + length
    return found


def pixels(png: bytes) -> np.ndarray:
    """The grey image as [row, column], first row at the top, from a valid 8-bit greyscale PNG."""
    found = chunks(png)
    assert [kind for kind, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", found[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 0, 0, 0, 0)
    scanlines = zlib.decompress(found[1][1])
    assert len(scanlines) == height * (1 + width)
    rows = np.frombuffer(scanlines, dtype=np.uint8).reshape(height, 1 + width)
    assert (rows[:, 0] == 0).all()  # filter type None on every row
    return rows[:, 1:]


def test_the_wire_order_is_row_major_by_iy_and_round_trips() -> None:
    cells = belief_tile()
    body = encode_tile("belief", (3, -2), 5, 0.2, cells)
    validate_body("map.tile", body)
    assert {k: v for k, v in body.items() if k != "data"} == {
        "layer": "belief", "x": 3, "y": -2, "version": 5, "resolution": 0.2, "size": 4, "encoding": "zlib+base64"}
    raw = zlib.decompress(base64.b64decode(body["data"]))
    assert raw[3 * 4 + 2] == 2 and raw[0:4] == bytes([1, 0, 0, 0]) and raw.count(1) == 4
    key, version, resolution, decoded = decode_tile(body)
    assert (key, version, resolution) == ((3, -2), 5, 0.2)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, cells)


def test_a_tile_larger_than_robots_want_still_fits_the_schema() -> None:
    cells = probability_cells(np.random.default_rng(1).normal(0.0, 3.0, size=(1024, 1024)))
    body = encode_tile("probability", (0, 0), 0, 0.05, cells)
    validate_body("map.tile", body)
    assert np.array_equal(decode_tile(body)[3], cells)
    with pytest.raises(ValueError, match="1 to 1024 a side"):
        encode_tile("probability", (0, 0), 0, 0.05, np.zeros((1025, 1025), dtype=np.uint8))


def test_tile_origin_is_the_corner_of_cell_zero() -> None:
    assert tile_origin((3, -2), 256, 0.2) == pytest.approx((153.6, -102.4))


def test_belief_and_probability_converters() -> None:
    state = np.array([[1, -1], [0, 1]], dtype=np.int8)
    assert belief_cells(state).tolist() == [[2, 1], [0, 2]] and belief_cells(state).dtype == np.uint8
    with pytest.raises(ValueError, match="believed states"):
        belief_cells(np.array([2], dtype=np.int8))
    log_odds = np.array([0.0, 1e6, -1e6, np.log(3.0), -np.log(3.0)], dtype=np.float32)
    assert probability_cells(log_odds).tolist() == [128, 255, 0, 191, 64]  # 255 * 0.75 = 191.25
    with pytest.raises(ValueError, match="NaN"):
        probability_cells(np.array([np.nan]))


def tampered(body: dict, **changes: object) -> dict:
    return {**body, **changes}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"data": "!!not base64!!"}, "not base64"),
        ({"data": base64.b64encode(b"plain bytes, not zlib").decode()}, "not zlib"),
        ({"data": base64.b64encode(zlib.compress(bytes(15))).decode()}, "exactly 4 x 4 = 16 bytes"),
        ({"data": base64.b64encode(zlib.compress(bytes(17))).decode()}, "exactly 4 x 4 = 16 bytes"),
        ({"data": base64.b64encode(zlib.compress(bytes(16)) + b"junk").decode()}, "and end there"),
        ({"data": base64.b64encode(zlib.compress(bytes(10**7))).decode()}, "exactly 4 x 4"),
        ({"data": base64.b64encode(zlib.compress(bytes([3] * 16))).decode()}, "belief cells must be 0"),
        ({"size": 5}, "exactly 5 x 5 = 25 bytes"),
        ({"layer": "height"}, "unknown tile layer 'height'"),
        ({"encoding": "gzip"}, "encoding"),
        ({"size": 2048}, "size"),
    ],
)
def test_tampered_tiles_are_refused_with_the_reason(change: dict, problem: str) -> None:
    body = encode_tile("belief", (0, 0), 1, 0.2, belief_tile())
    with pytest.raises(ValueError, match=problem):
        decode_tile(tampered(body, **change))


def test_a_belief_png_is_valid_north_up_and_legible() -> None:
    image = pixels(tile_png(belief_tile(), "belief"))
    assert image.shape == (4, 4)
    assert image.tolist() == [
        [255, 128, 0, 128],  # iy = 3, the northernmost row, comes first; the occupied cell is at ix = 2
        [255, 128, 128, 128],
        [255, 128, 128, 128],
        [255, 128, 128, 128],  # iy = 0 last; the free column ix = 0 is on the left (west)
    ]


def test_a_probability_png_is_dark_where_occupied() -> None:
    cells = np.array([[0, 255, 128]] * 3, dtype=np.uint8)  # [ix, iy]: iy = 0 free, iy = 1 occupied, iy = 2 unknown
    image = pixels(tile_png(cells, "probability"))
    assert image.tolist() == [[127] * 3, [0] * 3, [255] * 3]


def test_png_refuses_what_is_not_a_tile() -> None:
    with pytest.raises(ValueError, match="uint8"):
        tile_png(np.zeros((4, 4), dtype=np.int8), "belief")
    with pytest.raises(ValueError, match="square"):
        tile_png(np.zeros((4, 3), dtype=np.uint8), "belief")
    with pytest.raises(ValueError, match="unknown tile layer"):
        tile_png(np.zeros((4, 4), dtype=np.uint8), "height")
