// The live fleet map: occupancy tiles, roads by state, places, and robots as the server streams them.

import { describeError, el, getJSON, initPage, onEvent, robotHref } from "/static/common.js";

const ROADS = { free: "#9aa0a6", slow: "#e8a317", blocked: "#d93025", suspect: "#f57c00" };
const PLACES = { depot: "#1a4f8b", dropoff: "#188038", charger: "#8430ce" };
const ROBOTS = {
  idle: "#5f6368", to_pickup: "#1a73e8", loaded: "#188038", to_dropoff: "#188038", task: "#188038",
  goto: "#12a4b5", charging: "#8430ce", return: "#d93025",
};
const OTHER = "#202124";
const PARCEL = "#f9ab00";
const MAP_REFRESH_MS = 10000;
const LABEL_LIMIT = 30; // above this many robots, names would only clutter the map

const canvas = document.getElementById("map");
const ctx = canvas.getContext("2d");
const info = document.getElementById("map-info");
const tiles = new Map(); // tile url -> Image
let world = null; // the last /api/map
let robots = [];
let view = null; // world -> canvas transform of the last frame
let frames = 0;
let drawPending = false;

function scheduleDraw() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(draw);
  }
}

function pixelRatio() {
  return window.devicePixelRatio || 1;
}

/** The world rectangle to show: the map's bounds, else what the robots span, else nothing. */
function worldBounds() {
  const [xmin, ymin, xmax, ymax] = world?.bounds ?? [0, 0, 0, 0];
  if (xmax > xmin && ymax > ymin) return [xmin, ymin, xmax, ymax];
  if (!robots.length) return null;
  const xs = robots.map((r) => r.x);
  const ys = robots.map((r) => r.y);
  return [Math.min(...xs) - 5, Math.min(...ys) - 5, Math.max(...xs) + 5, Math.max(...ys) + 5];
}

/** Fit the bounds into the canvas keeping the aspect ratio; world y grows upward, canvas y downward. */
function fit([xmin, ymin, xmax, ymax]) {
  const pad = 12 * pixelRatio();
  const scale = Math.min((canvas.width - 2 * pad) / (xmax - xmin), (canvas.height - 2 * pad) / (ymax - ymin));
  const left = (canvas.width - scale * (xmax - xmin)) / 2;
  const top = (canvas.height - scale * (ymax - ymin)) / 2;
  return { x: (x) => left + (x - xmin) * scale, y: (y) => top + (ymax - y) * scale };
}

function tileImage(url) {
  let image = tiles.get(url);
  if (!image) {
    image = new Image();
    image.addEventListener("load", scheduleDraw);
    image.src = url;
    tiles.set(url, image);
  }
  return image;
}

function drawTiles() {
  const size = world.tile_size_m;
  ctx.imageSmoothingEnabled = false; // one pixel per cell: keep the cells square
  for (const tile of world.tiles) {
    const image = tileImage(tile.url);
    if (!image.complete || !image.naturalWidth) continue;
    // PNG row 0 is the tile's top (max y): the image's top-left corner sits at (x, y + size).
    const left = Math.round(view.x(tile.x));
    const top = Math.round(view.y(tile.y + size));
    ctx.drawImage(image, left, top, Math.round(view.x(tile.x + size)) - left, Math.round(view.y(tile.y)) - top);
  }
}

function strokeRoad(road) {
  ctx.beginPath();
  ctx.moveTo(view.x(road.a[0]), view.y(road.a[1]));
  ctx.lineTo(view.x(road.b[0]), view.y(road.b[1]));
  ctx.stroke();
}

function drawRoads() {
  const ratio = pixelRatio();
  ctx.lineCap = "round";
  ctx.strokeStyle = "#fff"; // a white casing keeps roads visible on grey, unexplored cells
  ctx.lineWidth = 5 * ratio;
  world.roads.forEach(strokeRoad);
  ctx.lineWidth = 3 * ratio;
  for (const road of world.roads) {
    ctx.strokeStyle = ROADS[road.state] ?? ROADS.free;
    ctx.setLineDash(road.state === "suspect" ? [6 * ratio, 5 * ratio] : []);
    strokeRoad(road);
  }
  ctx.setLineDash([]);
}

function drawPlaces() {
  const r = 6 * pixelRatio();
  for (const place of world.places) {
    const x = view.x(place.x);
    const y = view.y(place.y);
    ctx.fillStyle = PLACES[place.kind] ?? OTHER;
    ctx.beginPath();
    if (place.kind === "depot") {
      ctx.rect(x - r, y - r, 2 * r, 2 * r);
    } else if (place.kind === "dropoff") {
      ctx.moveTo(x, y - r);
      ctx.lineTo(x + r, y + r);
      ctx.lineTo(x - r, y + r);
    } else { // a charger, or a kind this page does not know
      ctx.moveTo(x, y - r);
      ctx.lineTo(x + r, y);
      ctx.lineTo(x, y + r);
      ctx.lineTo(x - r, y);
    }
    ctx.fill();
  }
}

function drawRobots() {
  const ratio = pixelRatio();
  const r = 6 * ratio;
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  ctx.textBaseline = "middle";
  for (const robot of robots) {
    const x = view.x(robot.x);
    const y = view.y(robot.y);
    const colour = ROBOTS[robot.state] ?? OTHER;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2.5 * ratio;
    ctx.beginPath(); // heading tick; the heading is counter-clockwise from +x in the world
    ctx.moveTo(x, y);
    ctx.lineTo(x + 2.2 * r * Math.cos(robot.heading), y - 2.2 * r * Math.sin(robot.heading));
    ctx.stroke();
    ctx.fillStyle = colour;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1.5 * ratio;
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    if (robot.task) {
      ctx.fillStyle = PARCEL;
      ctx.strokeStyle = "#333";
      ctx.lineWidth = ratio;
      ctx.fillRect(x + 0.4 * r, y - 1.6 * r, r, r);
      ctx.strokeRect(x + 0.4 * r, y - 1.6 * r, r, r);
    }
    if (robots.length <= LABEL_LIMIT) {
      ctx.strokeStyle = "rgba(255, 255, 255, 0.85)"; // a halo keeps the name legible on dark cells
      ctx.lineWidth = 3 * ratio;
      ctx.strokeText(robot.name, x + 1.6 * r, y + 0.6 * r);
      ctx.fillStyle = "#202124";
      ctx.fillText(robot.name, x + 1.6 * r, y + 0.6 * r);
    }
  }
}

function drawMessage(text) {
  ctx.fillStyle = "#636c76";
  ctx.font = `${15 * pixelRatio()}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, canvas.width / 2, canvas.height / 2);
  ctx.textAlign = "start";
}

function draw() {
  drawPending = false;
  const box = canvas.getBoundingClientRect();
  canvas.width = Math.round(box.width * pixelRatio());
  canvas.height = Math.round(box.height * pixelRatio());
  const bounds = worldBounds();
  view = bounds && fit(bounds);
  if (!view) {
    drawMessage("No map and no robots yet: waiting for the fleet");
  } else {
    if (world) {
      drawTiles();
      drawRoads();
      drawPlaces();
    }
    drawRobots();
    if (!robots.length) drawMessage("No robots reporting yet");
  }
  document.body.dataset.robotsDrawn = view ? robots.length : 0;
  document.body.dataset.frames = ++frames;
}

function describe() {
  const blocked = world ? world.roads.filter((road) => road.state === "blocked").length : 0;
  const parts = [robots.length ? `${robots.length} robots` : "no robots reporting yet"];
  if (world) {
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

async function loadMap() {
  try {
    world = await getJSON("/api/map");
  } catch (err) {
    showError("the map", err);
    return;
  }
  const current = new Set(world.tiles.map((tile) => tile.url));
  for (const url of tiles.keys()) if (!current.has(url)) tiles.delete(url);
  describe();
  scheduleDraw();
}

function showRobots(list) {
  robots = list;
  describe();
  scheduleDraw();
}

/** The robot drawn within a few pixels of a click, to open its page. */
function robotAt(event) {
  if (!view) return null;
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * pixelRatio();
  const y = (event.clientY - box.top) * pixelRatio();
  const reach = 10 * pixelRatio();
  return robots.find((robot) => Math.hypot(view.x(robot.x) - x, view.y(robot.y) - y) <= reach) ?? null;
}

function swatch(shape, colour) {
  const style = shape === "line" || shape === "dashed" ? `border-color: ${colour}` : `background: ${colour}`;
  return el("span", { class: `swatch ${shape}`, style });
}

function renderLegend() {
  const item = (shape, colour, label) => el("li", {}, swatch(shape, colour), label);
  const placeShape = { depot: "square", dropoff: "triangle", charger: "diamond" };
  document.getElementById("legend").replaceChildren(
    el("li", {}, el("h3", {}, "Robots")),
    ...Object.entries(ROBOTS).map(([state, colour]) => item("dot", colour, state.replace("_", " "))),
    item("dot", OTHER, "other"),
    item("parcel", PARCEL, "has a task"),
    el("li", {}, el("h3", {}, "Roads")),
    ...Object.entries(ROADS).map(([state, colour]) => item(state === "suspect" ? "dashed" : "line", colour, state)),
    el("li", {}, el("h3", {}, "Places")),
    ...Object.entries(PLACES).map(([kind, colour]) => item(placeShape[kind], colour, kind)),
  );
}

initPage();
renderLegend();
canvas.addEventListener("click", (event) => {
  const robot = robotAt(event);
  if (robot) location.href = robotHref(robot.did);
});
canvas.addEventListener("mousemove", (event) => {
  canvas.style.cursor = robotAt(event) ? "pointer" : "";
});
new ResizeObserver(scheduleDraw).observe(canvas);
onEvent("robots", showRobots);
onEvent("map", loadMap);
setInterval(loadMap, MAP_REFRESH_MS);
loadMap();
getJSON("/api/robots").then(showRobots, (err) => showError("the robots", err));
