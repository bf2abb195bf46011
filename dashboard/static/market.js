// The task market by state, newest first, refreshed every few seconds. Robots and customers by the names the fleet
// gave them (the DID on hover); a drop-off by the map's place when it is one, else its rounded coordinates.

import {
  describeError, el, fillTable, formatMoney, formatTime, getJSON, initPage, robotHref, shortDid,
} from "/static/common.js";

const STATES = ["open", "awarded", "settled", "refunded"];
const HEADINGS = ["Task", "Customer", "Robot", "Price", "Max price", "Deadline", "Drop-off", "Outcome"];
const NUMERIC = new Set(["Price", "Max price"]);
const REFRESH_MS = 3000;
const LIMIT = 200;
const PLACE_M = 1.0; // a drop-off this close to one of the map's places is at that place
const KIND_NAMES = { dropoff: "Drop-off", depot: "Depot", charger: "Charger" };
const error = document.getElementById("market-error");
let places = []; // [{x, y, label}] from /api/map; none for a dashboard of a ledger alone

/** The map's places with a readable name each: its own name or id when the map gives one, else kind and number. */
async function loadPlaces() {
  try {
    const status = await getJSON("/api/status");
    if (typeof status.sim_s !== "number") return; // a dashboard of a ledger alone has no map to ask
    const map = await getJSON("/api/map");
    const counts = {};
    places = (map.places ?? []).map((place) => {
      counts[place.kind] = (counts[place.kind] ?? 0) + 1;
      const label = place.name ?? place.id ?? `${KIND_NAMES[place.kind] ?? place.kind} ${counts[place.kind]}`;
      return { x: place.x, y: place.y, label: place.street ? `${label}, ${place.street}` : label };
    });
  } catch {
    places = []; // not a running fleet: coordinates only
  }
}

function dropoffCell(dropoff) {
  if (!dropoff) return "—";
  const [x, y] = dropoff;
  const where = `(${Math.round(x)}, ${Math.round(y)}) m`;
  const place = places.find((p) => Math.hypot(p.x - x, p.y - y) <= PLACE_M);
  return place ? el("span", { class: "place", title: `${place.label} at ${where}` }, place.label) : where;
}

/** A name (else the short DID) with the full DID on hover; a link to the robot's page for a robot. */
function who(did, name, link) {
  if (!did) return "—";
  const attrs = { class: name ? "named" : "did", title: did, href: link ? robotHref(did) : null };
  return el(link ? "a" : "span", attrs, name || shortDid(did));
}

function taskRow(task) {
  return el("tr", { "data-task": task.id },
    el("td", {}, task.id),
    el("td", { "data-field": "customer" }, who(task.customer, task.customer_name, false)),
    el("td", { "data-field": "robot" }, who(task.robot, task.robot_name, true)),
    el("td", { class: "num" }, formatMoney(task.price, task.currency)),
    el("td", { class: "num" }, formatMoney(task.max_price, task.currency)),
    el("td", {}, formatTime(task.deadline_ms)),
    el("td", { "data-field": "dropoff" }, dropoffCell(task.dropoff)),
    el("td", {}, task.outcome ?? "—"),
  );
}

async function refresh() {
  try {
    const lists = await Promise.all(STATES.map((state) => getJSON(`/api/tasks?state=${state}&limit=${LIMIT}`)));
    STATES.forEach((state, i) => {
      const tasks = lists[i];
      document.getElementById(`count-${state}`).textContent = tasks.length < LIMIT ? tasks.length : `${LIMIT}+`;
      fillTable(document.getElementById(`tasks-${state}`), tasks.map(taskRow), `No ${state} tasks yet.`);
    });
    error.textContent = "";
  } catch (err) {
    error.textContent = `Could not load the tasks: ${describeError(err)}`;
  }
}

initPage();
for (const state of STATES) {
  const table = document.getElementById(`tasks-${state}`);
  table.createTHead().append(el("tr", {}, HEADINGS.map((h) => el("th", { scope: "col", class: NUMERIC.has(h) ? "num" : null }, h))));
  table.createTBody();
}
setInterval(refresh, REFRESH_MS);
loadPlaces().then(refresh);
