"""The map page (issue #19) in a real Chromium, on the running fleet of test_app.py: Leaflet in plain coordinates
(one unit = one metre) shows every tile the API serves at its metre bounds, every road in its state's colour,
every place and every placed robot in its state; the + control and the keyboard zoom and pan, and the scale
bar follows in metres; the legend names every state in a colour of its own; nothing leaves the machine."""

from __future__ import annotations

from typing import Any

import httpx

from launch.up import RunningFleet
from tests.browser_offline import assert_accessible, assert_offline, screenshot
from tests.dashboard.test_app import api, fleet  # noqa: F401 - the running fleet and its dashboard, reused

ROBOT_STATES = {"idle", "to_pickup", "loaded", "to_dropoff", "delivered", "failed", "goto", "charging", "return",
                "online", "unknown", "offline"}
ROAD_STATES = {"free", "slow", "blocked", "suspect"}
PLACE_KINDS = {"depot", "dropoff", "charger"}

_TILES_READY = """(count) => {
  const images = [...document.querySelectorAll('#map img.map-tile')];
  return images.length === count && images.every((image) => image.complete && image.naturalWidth > 0);
}"""
_BOXES = """(selector) => [...document.querySelectorAll(selector)].map((node) => {
  const box = node.getBoundingClientRect();
  return {left: box.left, top: box.top, right: box.right, bottom: box.bottom, width: box.width, height: box.height,
          text: node.textContent, hidden: getComputedStyle(node).visibility === 'hidden',
          state: node.dataset.state ?? null, label: node.getAttribute('aria-label'),
          stroke: node.getAttribute('stroke'), dash: node.getAttribute('stroke-dasharray')};
})"""


def placed_robots(api: httpx.Client) -> list[dict[str, Any]]:
    """The robots that have said where they are (a robot that never reported has no place on the map)."""
    return [robot for robot in api.get("/api/robots").json() if robot["x"] is not None]


def open_map(page: Any, fleet: RunningFleet, api: httpx.Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The map page with every tile loaded and every placed robot drawn; the API's map and placed robots."""
    world = api.get("/api/map").json()
    placed = placed_robots(api)
    page.goto(fleet.dashboard.url.rstrip("/") + "/")
    page.wait_for_selector(f"body[data-robots-drawn='{len(placed)}'][data-places-drawn]")
    page.wait_for_function(_TILES_READY, arg=len(world["tiles"]))
    return world, placed


def legend(page: Any, group: str) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        f".map-legend [data-group='{group}'] li",
        "items => items.map((li) => ({key: li.dataset.key ?? null, colour: li.dataset.colour ?? null,"
        " text: li.textContent.trim(), swatch: getComputedStyle(li.querySelector('.swatch')).backgroundColor"
        " + '/' + getComputedStyle(li.querySelector('.swatch')).borderTopColor}))")


def scale_bar(page: Any) -> tuple[str, float, float]:
    """The scale bar's text, the metres it says and its width in pixels."""
    text = page.text_content(".leaflet-control-scale-line").strip()
    value, unit = text.split()
    metres = float(value) * {"m": 1, "km": 1000}[unit]
    return text, metres, page.eval_on_selector(".leaflet-control-scale-line", "n => n.getBoundingClientRect().width")


def test_the_map_shows_every_tile_road_place_and_robot(fleet: RunningFleet, api: httpx.Client, page: Any) -> None:
    world, placed = open_map(page, fleet, api)
    zoom = float(page.get_attribute("body", "data-zoom"))
    pixels_per_metre = 2 ** zoom

    tiles = page.evaluate(_BOXES, "#map img.map-tile")
    assert len(tiles) == len(world["tiles"]) > 0
    side_px = world["tile_size_m"] * pixels_per_metre
    assert all(abs(tile["width"] - side_px) < 1.5 and abs(tile["height"] - side_px) < 1.5 for tile in tiles)

    roads = page.evaluate(_BOXES, "#map path.road")
    assert len(roads) == len(world["roads"]) > 0
    colours = {item["key"]: item["colour"] for item in legend(page, "roads")}
    drawn = sorted((road["stroke"], road["dash"] is not None) for road in roads)
    wanted = sorted((colours[road["state"]], road["state"] == "suspect") for road in world["roads"])
    assert drawn == wanted

    places = page.evaluate(_BOXES, "#map .place")
    assert len(places) == len(world["places"]) > 0
    assert sorted(place["label"].split(" at ")[0] for place in places) == sorted(
        item["text"] for kind in (p["kind"] for p in world["places"])
        for item in legend(page, "places") if item["key"] == kind)

    shown = page.evaluate(_BOXES, "#map .robot")
    assert len(shown) == len(placed) > 0
    assert sorted(robot["state"] for robot in shown) == sorted(
        robot["state"] if robot["state"] in ROBOT_STATES else "unknown" for robot in placed)
    assert {robot["label"].split(":")[0] for robot in shown} == {robot["name"] for robot in placed}
    # Robots sit where they are, in metres: two of them are as many pixels apart as the scale says.
    by_name = {robot["label"].split(":")[0]: robot for robot in shown}
    (a, b), (ea, eb) = placed[:2], (by_name[placed[0]["name"]], by_name[placed[1]["name"]])
    metres = ((a["x"] - b["x"]) ** 2 + (a["y"] - b["y"]) ** 2) ** 0.5
    pixels = ((ea["left"] - eb["left"]) ** 2 + (ea["top"] - eb["top"]) ** 2) ** 0.5
    assert abs(pixels - metres * pixels_per_metre) < 2.0

    labels = [label for label in page.evaluate(_BOXES, "#map .robot-label") if not label["hidden"]]
    assert labels, "no robot label is shown"
    for i, one in enumerate(labels):
        for other in labels[i + 1:]:
            overlap = one["left"] < other["right"] and other["left"] < one["right"] \
                and one["top"] < other["bottom"] and other["top"] < one["bottom"]
            assert not overlap, f"labels {one['text']!r} and {other['text']!r} overlap"

    screenshot(page, "map")
    assert_offline(page)
    assert_accessible(page)
    assert page.problems == []


def test_zoom_and_pan_move_the_map_and_the_scale_bar_follows(fleet: RunningFleet, api: httpx.Client,
                                                             page: Any) -> None:
    open_map(page, fleet, api)
    zoom = float(page.get_attribute("body", "data-zoom"))
    text, metres, width = scale_bar(page)
    assert abs(width - metres * 2 ** zoom) < 1.5, "the scale bar does not read metres"

    page.click("a.leaflet-control-zoom-in")
    page.wait_for_selector(f"body[data-zoom='{zoom + 1:g}']")  # set on zoomend; the scale bar follows at once
    text_in, metres_in, width_in = scale_bar(page)
    assert text_in != text
    assert abs(width_in - metres_in * 2 ** (zoom + 1)) < 1.5

    before = page.eval_on_selector("#map img.map-tile", "n => n.getBoundingClientRect().left")
    page.focus("#nav a:last-child")
    page.keyboard.press("Tab")  # the keyboard's next stop after the navigation is the map
    assert page.evaluate("() => document.activeElement.id") == "map"
    page.keyboard.press("ArrowRight")  # pans the view east: the ground moves left
    page.wait_for_function("(x) => document.querySelector('#map img.map-tile').getBoundingClientRect().left < x - 20",
                           arg=before)
    page.keyboard.press("-")
    page.wait_for_selector(f"body[data-zoom='{zoom:g}']")
    screenshot(page, "panned")

    # Zoomed all the way out the robots crowd together: one label is shown, the others hidden until focused.
    for _ in range(12):
        if page.get_attribute("body", "data-zoom") == "-3":
            break
        now = page.get_attribute("body", "data-zoom")
        page.click("a.leaflet-control-zoom-out")
        page.wait_for_function("(zoom) => document.body.dataset.zoom !== zoom", arg=now)
    assert page.get_attribute("body", "data-zoom") == "-3"
    labels = page.evaluate(_BOXES, "#map .robot-label")
    shown = [label for label in labels if not label["hidden"]]
    assert len(shown) == 1 and len(labels) == len(placed_robots(api))
    hidden = next(label["text"] for label in labels if label["hidden"])
    page.focus(f"#map .robot[aria-label^='{hidden}:']")  # as Tab would: its label comes back
    page.wait_for_function("(name) => [...document.querySelectorAll('#map .robot-label')].some((label) => "
                           "label.textContent === name && getComputedStyle(label).visibility === 'visible')",
                           arg=hidden)
    assert_offline(page)
    assert page.problems == []


def test_the_legend_names_every_state_in_a_colour_of_its_own(fleet: RunningFleet, api: httpx.Client,
                                                            page: Any) -> None:
    world, placed = open_map(page, fleet, api)
    for group, keys in (("robots", ROBOT_STATES), ("roads", ROAD_STATES), ("places", PLACE_KINDS)):
        items = [item for item in legend(page, group) if item["key"] in keys]
        assert {item["key"] for item in items} == keys, group
        assert all(item["text"] for item in items)
        assert len({item["colour"].lower() for item in items}) == len(items), f"{group}: two states share a colour"
        assert len({item["swatch"] for item in items}) == len(items), f"{group}: two swatches look the same"
    assert {robot["state"] for robot in placed} <= ROBOT_STATES
    assert {road["state"] for road in world["roads"]} <= ROAD_STATES
    cells = " ".join(item["text"] for item in legend(page, "cells"))
    assert "free" in cells and "occupied" in cells and "unknown" in cells and "scanned" in cells
    assert "grey" in page.text_content(".map-legend [data-group='cells'] h3")

    page.set_viewport_size({"width": 600, "height": 800})  # a phone: the legend starts folded, and opens
    page.reload()
    page.wait_for_selector(f"body[data-robots-drawn='{len(placed)}']")
    assert page.eval_on_selector(".map-legend", "n => n.open") is False
    page.click(".map-legend summary")
    assert page.eval_on_selector(".map-legend", "n => n.open") is True
    assert_offline(page)
    assert [p for p in page.problems if not p.endswith("/api/events: net::ERR_ABORTED")] == []  # the reload's
