// The live fleet map on Leaflet (vendored: /static/vendor/leaflet, loaded by map.html as the global L) in its
// plain-coordinates mode: one map unit is one metre of the city (x east, y north), so the scale bar reads metres.
// Occupancy tiles are image overlays at their metre bounds, roads are coloured by state, places and robots are
// markers; robots move as the server streams them and their name labels never overlap (see declutter()).

import { describeError, el, getJSON, initPage, onEvent, robotHref } from "/static/common.js";

const L = window.L;

// Every state has its own colour within its group (the legend lists them all; a test checks they differ).
const ROADS = {
  free: ["#5f6b7a", "free"],
  slow: ["#f2b705", "slow: narrowed, passable"],
  blocked: ["#d93025", "blocked"],
  suspect: ["#e8710a", "suspect: one robot says blocked, not yet confirmed"],
};
const PLACES = {
  depot: ["#1a4f8b", "depot (pickups)"],
  dropoff: ["#188038", "drop-off point"],
  charger: ["#8430ce", "charger"],
};
const ROBOTS = { // robots/tasks.py (task states), robots/agent.py (modes), dashboard/telemetry.py (presence)
  idle: ["#6b7280", "idle"],
  to_pickup: ["#1a73e8", "to pickup"],
  loaded: ["#b45309", "loaded (parcel aboard)"],
  to_dropoff: ["#188038", "to drop-off"],
  delivered: ["#0f766e", "delivered"],
  failed: ["#b3261e", "task failed"],
  goto: ["#c2185b", "going to a point"],
  charging: ["#8430ce", "charging"],
  return: ["#ea580c", "returning to depot"],
  online: ["#94a3b8", "online, no telemetry yet"],
  unknown: ["#111827", "other state"],
  offline: ["#ffffff", "offline (last known place)"],
};
const OFFLINE_RING = "#5f6368";
const PARCEL = "#f9ab00";
const CELLS = [ // spatial/tiles.py: one pixel per cell of the fused belief
  ["cell", "#ffffff", "free"], ["cell", "#000000", "occupied"], ["cell", "#808080", "unknown: not seen yet, or faded"],
  ["unscanned", "", "hatched: no robot has scanned here"],
];
const MAP_REFRESH_MS = 10000;
const MIN_ZOOM = -3; // 1 px = 8 m
const MAX_ZOOM = 6; // 64 px = 1 m: a 0.2 m cell is 12.8 px

const container = document.getElementById("map");
const info = document.getElementById("map-info");
const map = L.map(container, {
  crs: L.CRS.Simple, minZoom: MIN_ZOOM, maxZoom: MAX_ZOOM, zoomSnap: 0.25, zoomDelta: 1, keyboard: true,
  attributionControl: true,
}).setView([0, 0], 0);
map.attributionControl.setPrefix(false);
map.attributionControl.addAttribution("Leaflet · occupancy map fused from the robots' scans");
L.control.scale({ imperial: false, metric: true, maxWidth: 160, position: "bottomleft" }).addTo(map);

const tileLayer = L.layerGroup().addTo(map);
const casingLayer = L.layerGroup().addTo(map);
const roadLayer = L.layerGroup().addTo(map);
const placeLayer = L.layerGroup().addTo(map);
const robotLayer = L.layerGroup().addTo(map);

const tiles = new Map(); // "ix,iy" -> {overlay, version}
const roads = new Map(); // "u|v" -> {line, casing, state}
const robots = new Map(); // did -> {marker, label}
let world = null; // the last /api/map
let robotRows = [];
let fitted = null; // null, then "robots" (what they span) or "city" (the map's bounds, once known)
let placesShown = false;
let frames = 0;

/** Metres (x east, y north) as a Leaflet LatLng of the plain CRS: [y, x]. */
const at = (x, y) => L.latLng(y, x);

function colourOf(table, key, fallback) {
  return (table[key] ?? table[fallback])[0];
}

// --- tiles -------------------------------------------------------------------------------------------

function showTiles() {
  const side = world.tile_size_m;
  const current = new Set();
  for (const tile of world.tiles) {
    const key = `${tile.ix},${tile.iy}`;
    current.add(key);
    const held = tiles.get(key);
    if (held && held.version === tile.version) continue;
    if (held) { // a newer version: swap the image in place, no flicker of the layer
      held.overlay.setUrl(tile.url);
      held.version = tile.version;
      continue;
    }
    const bounds = L.latLngBounds(at(tile.x, tile.y), at(tile.x + side, tile.y + side));
    const overlay = L.imageOverlay(tile.url, bounds, { className: "map-tile", interactive: false, alt: "" });
    overlay.on("load", () => { document.body.dataset.tilesLoaded = tileLayer.getLayers().length; });
    tiles.set(key, { overlay, version: tile.version });
    tileLayer.addLayer(overlay);
  }
  for (const [key, held] of tiles) {
    if (!current.has(key)) {
      tileLayer.removeLayer(held.overlay);
      tiles.delete(key);
    }
  }
}

// --- roads and places --------------------------------------------------------------------------------

function roadStyle(state) {
  const dashArray = state === "suspect" ? "6 5" : null;
  return { color: colourOf(ROADS, state, "free"), weight: 3, opacity: 0.95, dashArray };
}

function showRoads() {
  const current = new Set();
  for (const road of world.roads) {
    const key = `${road.u}|${road.v}`;
    current.add(key);
    const held = roads.get(key);
    const state = ROADS[road.state] ? road.state : "free";
    if (held) {
      if (held.state !== state) {
        held.line.setStyle(roadStyle(state));
        held.line.setTooltipContent(roadText(road, state));
        held.state = state;
      }
      continue;
    }
    const points = [at(...road.a), at(...road.b)];
    // A white casing keeps roads visible on grey (unknown) and black (occupied) cells.
    const casing = L.polyline(points, { color: "#fff", weight: 6, opacity: 0.9, interactive: false });
    const line = L.polyline(points, { ...roadStyle(state), className: "road" });
    line.bindTooltip(roadText(road, state), { sticky: true });
    casingLayer.addLayer(casing);
    roadLayer.addLayer(line);
    roads.set(key, { line, casing, state });
  }
  for (const [key, held] of roads) {
    if (!current.has(key)) {
      casingLayer.removeLayer(held.casing);
      roadLayer.removeLayer(held.line);
      roads.delete(key);
    }
  }
  document.body.dataset.roadsDrawn = roads.size;
}

function roadText(road, state) {
  return `${road.street ? `${road.street}: ` : ""}${state}`;
}

function showPlaces() {
  if (placesShown) return; // a city's places do not move
  placesShown = true;
  for (const place of world.places) {
    const kind = PLACES[place.kind] ? place.kind : "depot";
    const text = `${PLACES[kind][1]} at (${place.x.toFixed(1)}, ${place.y.toFixed(1)}) m`;
    const icon = L.divIcon({ className: `place place-${kind}`, html: "<span></span>", iconSize: [14, 14] });
    const marker = L.marker(at(place.x, place.y), { icon, keyboard: true, title: text, zIndexOffset: -100 });
    marker.bindTooltip(text, { direction: "top", offset: [0, -6] });
    placeLayer.addLayer(marker);
    marker.getElement()?.setAttribute("aria-label", text);
  }
  document.body.dataset.placesDrawn = world.places.length;
}

// --- robots ------------------------------------------------------------------------------------------

function robotText(robot) {
  const state = ROBOTS[robot.state] ? ROBOTS[robot.state][1] : robot.state;
  const task = robot.task ? `, task ${robot.task}` : "";
  const battery = typeof robot.battery === "number" ? `, battery ${Math.round(robot.battery * 100)}%` : "";
  return `${robot.name || robot.did}: ${state}${task}${battery}`;
}

function robotIcon() {
  return L.divIcon({
    className: "robot", iconSize: [16, 16],
    html: '<span class="heading"></span><span class="body"></span><span class="parcel"></span>',
  });
}

/** Colour, heading and parcel of a robot's marker, changed in place (its element, so focus stays on it). */
function styleRobot(element, robot) {
  const state = ROBOTS[robot.state] ? robot.state : "unknown";
  element.dataset.state = state;
  element.style.setProperty("--robot", ROBOTS[state][0]);
  element.style.setProperty("--ring", state === "offline" ? OFFLINE_RING : "#fff");
  // The world's heading is counter-clockwise from +x (east); CSS rotates clockwise from the right.
  element.style.setProperty("--heading", `${-(robot.heading ?? 0)}rad`);
  element.classList.toggle("has-task", Boolean(robot.task));
  element.classList.toggle("no-heading", typeof robot.heading !== "number" || state === "offline");
  element.setAttribute("aria-label", robotText(robot));
}

function addRobot(robot) {
  const marker = L.marker(at(robot.x, robot.y), { icon: robotIcon(), keyboard: true, riseOnHover: true });
  marker.bindTooltip(robot.name || robot.did, {
    permanent: true, direction: "right", offset: [8, 0], className: "robot-label", interactive: false,
  });
  marker.on("click", () => { location.href = robotHref(robot.did); });
  robotLayer.addLayer(marker);
  const element = marker.getElement();
  element.setAttribute("role", "link");
  element.addEventListener("keydown", (event) => {
    if (event.key === "Enter") location.href = robotHref(robot.did);
  });
  // A label hidden to avoid an overlap comes back while its robot is pointed at or focused.
  const label = marker.getTooltip().getElement();
  for (const [on, forced] of [["mouseover", true], ["mouseout", false], ["focus", true], ["blur", false]]) {
    element.addEventListener(on, () => label.classList.toggle("forced", forced));
  }
  return { marker, label, name: robot.name };
}

function showRobots() {
  const placed = robotRows.filter((robot) => typeof robot.x === "number" && typeof robot.y === "number");
  const current = new Set();
  for (const robot of placed) {
    current.add(robot.did);
    let held = robots.get(robot.did);
    if (!held) {
      held = addRobot(robot);
      robots.set(robot.did, held);
    } else {
      held.marker.setLatLng(at(robot.x, robot.y));
    }
    if (held.name !== robot.name) { // a robot's name rarely changes: re-laying its label every second would cost
      held.name = robot.name;
      held.marker.getTooltip().setContent(robot.name || robot.did);
    }
    styleRobot(held.marker.getElement(), robot);
    held.marker.setZIndexOffset(robot.state === "offline" ? -50 : 0);
  }
  for (const [did, held] of robots) {
    if (!current.has(did)) {
      robotLayer.removeLayer(held.marker);
      robots.delete(did);
    }
  }
  declutter();
  document.body.dataset.robotsDrawn = robots.size;
  document.body.dataset.frames = ++frames;
}

/** Hide every robot label that would overlap one already shown (greedy, in DID order, so stable as they move). */
function declutter() {
  const shown = [];
  // All boxes first, then the classes: visibility moves nothing, and reading between writes would lay out each time.
  const boxes = [...robots.keys()].sort().map((did) => robots.get(did).label)
    .map((label) => [label, label.getBoundingClientRect()]);
  for (const [label, box] of boxes) {
    const hit = shown.some((other) => box.left < other.right && other.left < box.right
      && box.top < other.bottom && other.top < box.bottom);
    label.classList.toggle("crowded", hit);
    if (!hit) shown.push(box);
  }
}

// --- fitting, legend, info ---------------------------------------------------------------------------

/** Show the whole city once (before the map is known, what the robots span); the user's view after that. */
function fitOnce() {
  if (fitted === "city") return;
  const [xmin, ymin, xmax, ymax] = world?.bounds ?? [0, 0, 0, 0];
  if (xmax > xmin && ymax > ymin) {
    const bounds = L.latLngBounds(at(xmin, ymin), at(xmax, ymax));
    fitted = "city";
    map.fitBounds(bounds, { padding: [12, 12], animate: false });
    map.setMaxBounds(bounds.pad(0.5));
  } else if (!fitted && robots.size) { // robots move: no bounds to keep the view in
    fitted = "robots";
    map.fitBounds(L.latLngBounds([...robots.values()].map(({ marker }) => marker.getLatLng())).pad(0.2),
      { animate: false });
  }
}

function swatch(shape, colour, ring) {
  const style = !colour ? null : shape === "line" || shape === "dashed" ? `border-color: ${colour}`
    : `background: ${colour}${ring ? `; box-shadow: 0 0 0 2px ${ring} inset` : ""}`;
  return el("span", { class: `swatch ${shape}`, style, "aria-hidden": "true" });
}

function legendList(title, rows) {
  return [
    el("h3", {}, title),
    el("ul", {}, ...rows.map(([shape, colour, text, key, ring]) =>
      el("li", { "data-key": key ?? null, "data-colour": colour || null }, swatch(shape, colour, ring), text))),
  ];
}

const Legend = L.Control.extend({
  options: { position: "topright" },
  onAdd() {
    const placeShape = { depot: "square", dropoff: "triangle", charger: "diamond" };
    // Folded on a narrow screen, where it would cover much of the map; its summary opens it.
    const box = el("details", { class: "map-legend", open: window.innerWidth >= 800 ? "" : null },
      el("summary", {}, "Legend"),
      el("section", { "data-group": "robots" }, ...legendList("Robots", [
        ...Object.entries(ROBOTS).map(([state, [colour, text]]) =>
          ["dot", colour, text, state, state === "offline" ? OFFLINE_RING : null]),
        ["parcel", PARCEL, "has a task", "task"],
      ])),
      el("section", { "data-group": "roads" }, ...legendList("Roads", Object.entries(ROADS).map(
        ([state, [colour, text]]) => [state === "suspect" ? "dashed" : "line", colour, text, state]))),
      el("section", { "data-group": "places" }, ...legendList("Places", Object.entries(PLACES).map(
        ([kind, [colour, text]]) => [placeShape[kind], colour, text, kind]))),
      el("section", { "data-group": "cells" }, ...legendList("Scanned ground (grey squares)", CELLS)),
      el("p", { class: "note" }, "The squares are the map the robots' lidar scans built, fused; "
        + "each is redrawn when its version changes."),
    );
    L.DomEvent.disableClickPropagation(box);
    L.DomEvent.disableScrollPropagation(box);
    return box;
  },
});

function describe() {
  const offline = robotRows.filter((robot) => robot.state === "offline").length;
  const unplaced = robotRows.length - robots.size;
  const parts = [robotRows.length ? `${robotRows.length} robots` : "no robots reporting yet"];
  if (offline) parts.push(`${offline} offline`);
  if (unplaced) parts.push(`${unplaced} not placed yet`);
  if (world) {
    const blocked = world.roads.filter((road) => road.state === "blocked").length;
    parts.push(`${world.tiles.length} map tiles`, `${world.roads.length} roads (${blocked} blocked)`,
      `road graph version ${world.graph_version}`);
  }
  info.textContent = parts.join(" · ");
  info.classList.remove("error");
}

function showError(what, err) {
  info.textContent = `Could not load ${what}: ${describeError(err)}`;
  info.classList.add("error");
}

// --- data --------------------------------------------------------------------------------------------

async function loadMap() {
  try {
    world = await getJSON("/api/map");
  } catch (err) {
    showError("the map", err);
    return;
  }
  world.tiles ??= [];
  world.roads ??= [];
  world.places ??= [];
  fitOnce();
  if (world.tile_size_m) showTiles();
  showRoads();
  showPlaces();
  document.body.dataset.tiles = tiles.size;
  document.body.dataset.graphVersion = world.graph_version;
  describe();
}

function takeRobots(list) {
  robotRows = list;
  showRobots();
  fitOnce();
  describe();
}

function showZoom() {
  document.body.dataset.zoom = map.getZoom();
}

initPage();
new Legend().addTo(map);
map.on("zoomend", () => { showZoom(); declutter(); });
map.on("moveend", declutter);
showZoom();
new ResizeObserver(() => map.invalidateSize()).observe(container);
onEvent("robots", takeRobots);
onEvent("map", loadMap);
setInterval(loadMap, MAP_REFRESH_MS);
loadMap();
getJSON("/api/robots").then(takeRobots, (err) => showError("the robots", err));
