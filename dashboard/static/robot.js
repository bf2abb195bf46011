// One robot's page: identity, standing, witnessed location, credit rating, profit and loss, telemetry (a table and speed and battery
// sparklines), tasks and DID document; the DID comes from the path.

import {
  ApiError, describeError, didText, el, fillTable, fixed, formatMoney, formatTime, getJSON, initPage, onEvent,
} from "/static/common.js";

const REFRESH_MS = 5000;
const SAMPLES = 120; // the sparklines' last two minutes, at the robots event's one a second
const SPARK_W = 240;
const SPARK_H = 48;
const SVG = "http://www.w3.org/2000/svg";
const did = decodeURIComponent(location.pathname.slice("/robots/".length));
const $ = (id) => document.getElementById(id);
const samples = []; // {speed, battery} as this browser saw them, oldest first
let offlineAfterS = 10; // the silence after which the fleet shows a robot offline (the API says)

function taskRow(task) {
  return el("tr", { "data-task": task.id },
    el("td", {}, task.id),
    el("td", {}, el("span", { class: "badge" }, task.state)),
    el("td", {}, didText(task.customer)),
    el("td", { class: "num" }, formatMoney(task.price, task.currency)),
    el("td", {}, formatTime(task.deadline_ms)),
    el("td", {}, task.outcome ?? "—"),
  );
}

// --- telemetry --------------------------------------------------------------------------------------

const FIELDS = { // readable names and units of the telemetry body's fields (docs/protocol.md); others as they are
  "pose.x": ["Position x", "m"], "pose.y": ["Position y", "m"], "pose.theta": ["Heading", "rad"],
  "twist.v": ["Speed", "m/s"], "twist.w": ["Turn rate", "rad/s"], battery: ["Battery", "%"],
  state: ["State", ""], task: ["Task", ""], odometer_m: ["Odometer", "m"], load_kg: ["Load", "kg"], t: ["Issued", ""],
};

/** The telemetry body as [path, value] pairs, nested objects flattened to dotted paths. */
function flatten(body, prefix = "") {
  return Object.entries(body).flatMap(([key, value]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    return value && typeof value === "object" && !Array.isArray(value) ? flatten(value, path) : [[path, value]];
  });
}

function fieldValue(path, value) {
  if (value === null || value === undefined) return "—";
  if (path === "battery" && typeof value === "number") return `${(value * 100).toFixed(1)} %`;
  if (path === "t" && typeof value === "number") return formatTime(value);
  const unit = FIELDS[path]?.[1];
  if (typeof value === "number") return `${Number.isInteger(value) ? value : value.toFixed(3)}${unit ? ` ${unit}` : ""}`;
  return typeof value === "string" ? value : JSON.stringify(value);
}

function telemetryRows(body) {
  return flatten(body ?? {}).map(([path, value]) => el("tr", { "data-field": path },
    el("th", { scope: "row" }, FIELDS[path]?.[0] ?? path, FIELDS[path] ? el("span", { class: "muted" }, ` ${path}`) : null),
    el("td", { class: "telemetry-value" }, fieldValue(path, value))));
}

function sample(speed, battery) {
  samples.push({ speed: typeof speed === "number" ? speed : null, battery: typeof battery === "number" ? battery : null });
  if (samples.length > SAMPLES) samples.splice(0, samples.length - SAMPLES);
  drawSparkline($("spark-speed"), samples.map((s) => s.speed), null, "speed", (v) => `${v.toFixed(2)} m/s`);
  drawSparkline($("spark-battery"), samples.map((s) => s.battery), 1, "battery", (v) => `${(v * 100).toFixed(0)} %`);
  const last = samples[samples.length - 1];
  $("spark-speed-now").textContent = last.speed === null ? "" : `(now ${last.speed.toFixed(2)})`;
  $("spark-battery-now").textContent = last.battery === null ? "" : `(now ${(last.battery * 100).toFixed(0)} %)`;
}

/** An inline-SVG sparkline of ``values`` (nulls are gaps) scaled from 0 to ``top`` (null: the largest seen). */
function drawSparkline(svg, values, top, what, format) {
  const known = values.filter((v) => v !== null);
  const high = top ?? Math.max(0.1, ...known);
  const x = (i) => (values.length === 1 ? SPARK_W : (i * SPARK_W) / (SAMPLES - 1) + (SAMPLES - values.length) * SPARK_W / (SAMPLES - 1));
  const y = (v) => SPARK_H - 2 - (Math.min(Math.max(v, 0), high) / high) * (SPARK_H - 4);
  const points = values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("class", "spark-line");
  const children = [line];
  if (points.length) {
    const [cx, cy] = points[points.length - 1].split(",");
    const dot = document.createElementNS(SVG, "circle");
    Object.entries({ cx, cy, r: 2.5, class: "spark-dot" }).forEach(([k, v]) => dot.setAttribute(k, v));
    children.push(dot);
  }
  svg.replaceChildren(...children);
  svg.dataset.points = String(points.length);
  svg.setAttribute("aria-label", known.length
    ? `${what} over the last ${values.length} s: now ${format(known[known.length - 1])}, lowest ${format(Math.min(...known))}, highest ${format(Math.max(...known))}`
    : `${what}: no telemetry yet`);
}

// --- rating and profit and loss ----------------------------------------------------------------------

function measuredFrom(name, inputs, currency) {
  switch (name) {
    case "revenue": return `log10(1 + ${inputs.earned}) / 5: ${formatMoney(inputs.earned, currency)} earned, full at 999.99`;
    case "activity": return `${inputs.delivered} of 50 tasks, ${inputs.days_active} of 30 days active`;
    case "reliability": return `${inputs.delivered} delivered / (${inputs.delivered} + ${inputs.failed} failed + 3 × ${inputs.faked} faked)`;
    case "bond": return `1 − ${inputs.bond_slashed} slashed / ${inputs.bond_posted} posted`;
    default: return "";
  }
}

function renderRating(rating) {
  const currency = rating.pnl.currency ?? "EUR";
  $("rating-grade").textContent = rating.grade;
  $("rating-grade").dataset.grade = rating.grade;
  $("rating-score").textContent = rating.score;
  fillTable($("rating-components"), Object.entries(rating.components).map(([name, part]) => el("tr", { "data-component": name },
    el("th", { scope: "row" }, name),
    el("td", {}, measuredFrom(name, rating.inputs, currency)),
    el("td", { class: "num" }, part.value.toFixed(4)),
    el("td", { class: "num" }, part.weight),
    el("td", { class: "num" }, part.points.toFixed(2)))), "No rating yet.");
  const held = rating.inputs.bond_held;
  $("rating-note").textContent = `Score = the points' sum, rounded (${rating.score}). Grades: AAA ≥ 95, AA ≥ 85, A ≥ 75, `
    + `BBB ≥ 60, BB ≥ 45, B ≥ 30, else NR; NR without a bond (holds ${formatMoney(held, currency)}), Provisioned `
    + `before 3 outcomes. As of ledger entry ${rating.as_of}.`;
  const p = rating.pnl;
  const line = (key, label, amount, sign = "") => el("tr", { "data-line": key },
    el("th", { scope: "row" }, label), el("td", { class: "num" }, amount === null ? "—" : `${sign}${formatMoney(amount, currency)}`));
  fillTable($("robot-pnl"), [
    line("gross", "Tasks' prices", p.gross),
    line("fees", "Marketplace fees", p.fees, "− "),
    line("earned", "Earned (paid to its owner)", p.earned),
    line("slashed", "Bond slashed", p.slashed, "− "),
    line("energy", `Energy (${p.energy_kwh === null ? "no telemetry" : `${p.energy_kwh} kWh`})`, p.energy, "− "),
    line("net", "Net", p.net),
  ], "No money moved yet.");
  $("robot-pnl").tBodies[0].lastElementChild.classList.add("total");
  $("pnl-note").textContent = `Energy: the charge to refill the battery from its last verified level, (1 − battery) × `
    + `${p.battery_kwh} kWh × ${formatMoney(p.price_per_kwh, currency)}/kWh (an assumed tariff); the rest is from the ledger.`;
}

// --- witnessed location --------------------------------------------------------------------------------

function renderWitness(witness) {
  $("robot-witnessed").textContent = witness ? fixed(witness.confidence) : "—";
  if (!witness) {
    fillTable($("robot-witness"), [], "No peer has judged its location yet.");
    return;
  }
  const line = (key, label, value) => el("tr", { "data-verdict": key },
    el("th", { scope: "row" }, label), el("td", { class: "num" }, value));
  fillTable($("robot-witness"), [
    line("confidence", "Confidence", fixed(witness.confidence)),
    line("seen", "Seen where it said (a peer's lidar returned from it)", witness.seen),
    line("unseen", "Unseen (a peer's beam passed through where it said)", witness.unseen),
    line("impossible", "Impossible (where it said is inside a known obstacle)", witness.impossible),
    line("last", "Last verdict", witness.last ? `${witness.last}, ${formatTime(witness.last_t)}` : "—"),
    line("seen_t", "Last seen by a peer", witness.seen_t ? formatTime(witness.seen_t) : "never"),
  ]);
}

// --- the page --------------------------------------------------------------------------------------

function render(robot) {
  document.title = `${robot.name} · DePAI fleet`;
  $("robot-name").textContent = robot.name;
  $("robot-did").textContent = robot.did;
  $("robot-trust").textContent = fixed(robot.trust);
  $("robot-reputation").textContent = fixed(robot.reputation);
  $("robot-earned").textContent = formatMoney(robot.earnings.total, robot.earnings.currency);
  $("robot-paid-tasks").textContent = robot.earnings.tasks;
  $("robot-state").textContent = robot.state;
  $("robot-state").dataset.state = robot.online ? "online" : robot.state;
  $("robot-seen").textContent = robot.seen_s ? formatTime(robot.seen_s * 1000) : "never";
  renderWitness(robot.witness);
  offlineAfterS = robot.offline_after_s ?? offlineAfterS;
  markOffline(robot.state === "offline");
  const refusals = Object.entries(robot.refusals ?? {}).sort(([, a], [, b]) => b - a);
  fillTable($("robot-refusals"), refusals.map(([reason, count]) => el("tr", { "data-reason": reason },
    el("td", {}, reason), el("td", { class: "num" }, count))), "Nothing refused from this robot.");
  fillTable($("robot-telemetry"), telemetryRows(robot.telemetry), "No telemetry yet.");
  $("robot-document").textContent = JSON.stringify(robot.document, null, 2);
  fillTable($("robot-tasks"), robot.tasks.map(taskRow), "No tasks yet: this robot has not won any.");
  if (!samples.length) sample(robot.speed, robot.battery);
  $("robot-details").hidden = false;
  $("robot-error").textContent = "";
}

function markOffline(offline) {
  $("robot-details").dataset.offline = String(offline);
  $("robot-offline").hidden = !offline;
  $("robot-offline-note").hidden = !offline;
  $("robot-offline-note").textContent = offline
    ? `Offline: its death was verified, or nothing was heard from it for ${offlineAfterS} s. What follows is as it was last heard.`
    : "";
}

async function load() {
  try {
    const [robot, rating] = await Promise.all([getJSON(`/api/robots/${encodeURIComponent(did)}`),
      getJSON(`/api/robots/${encodeURIComponent(did)}/rating`).catch((err) => err)]);
    render(robot);
    if (rating instanceof Error) {
      $("rating-note").textContent = `No rating: ${describeError(rating)}`;
    } else {
      renderRating(rating);
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      clearInterval(timer);
      $("robot-name").textContent = "No such robot";
      $("robot-details").hidden = true;
      $("robot-error").replaceChildren(`No robot with the DID ${did} is registered in this fleet. `,
        el("a", { href: "/robots" }, "See all robots"));
    } else {
      $("robot-error").textContent = `Could not load the robot: ${describeError(err)}`;
    }
  }
}

initPage();
onEvent("robots", (robots) => {
  const robot = robots.find((row) => row.did === did);
  if (!robot) return;
  sample(robot.speed, robot.battery);
  markOffline(robot.state === "offline");
});
const timer = setInterval(load, REFRESH_MS);
load();
