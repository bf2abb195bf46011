// The DAO's revenue: headline figures, accounts, uPlot charts with labelled axes (over fleet time, per robot, per
// member), and tables in the charts' order, names shown and DIDs on hover; the newest tasks searchable and sortable.
// uPlot (dashboard/static/vendor/uplot) is loaded by the page before this module runs, as the global ``uPlot``.

import {
  describeError, el, fillTable, formatBps, formatMoney, formatTime, getJSON, initPage, onEvent, robotHref, shortDid,
} from "/static/common.js";

const REFRESH_MS = 5000;
const TASKS_SHOWN = 1000; // the newest settlements the task table holds (the CSV has them all)
const ACCOUNTS = ["treasury", "reserve", "operator", "undistributed"];
const BUCKETS = { hour: { seconds: 3600, unit: "hours" }, day: { seconds: 86400, unit: "days" } };
const HEIGHT = 300;
const COLOR = "#0b5cad";
const $ = (id) => document.getElementById(id);

const state = {
  revenue: null,
  bucket: "hour",
  tasks: [], // rows of /api/revenue/tasks, newest first
  totalTasks: 0,
  search: "",
  sort: { key: "settled_at_ms", descending: true },
  clock: [], // [wall ms, fleet clock s] samples from the status stream
};
/** The uPlot charts by name (time, robot, member), also on ``window.revenueCharts`` for tests and the console. */
const charts = {};
window.revenueCharts = charts;
const shown = {}; // chart name -> what it shows now, read by its legend (options outlive a setData)

// --- charts ------------------------------------------------------------------------------------------------

const euros = (minor) => minor / 100; // for drawing only: every figure written out is formatted from minor units
const axisEuros = (u, values) => values.map((v) => (v === null ? "" : v.toFixed(2)));

/** Ticks of a fleet-time axis in UTC, 24-hour: "14:00", with the date under the first tick and under midnights;
 * dates alone when the ticks are a day or more apart. */
function axisTimes(u, splits, axisIdx, space, incr) {
  return splits.map((ts, i) => {
    const iso = new Date(ts * 1000).toISOString(); // 2026-09-21T14:00:00.000Z
    const day = iso.slice(0, 10);
    if (incr >= 86_400) return day;
    const time = iso.slice(11, 16);
    return i === 0 || time === "00:00" ? `${time}\n${day}` : time;
  });
}

function widthOf(node) {
  return Math.max(320, node.clientWidth || node.parentElement.clientWidth - 40);
}

/** Draw (or redraw) chart ``name`` in ``node``: made again when its options change, else only its data. */
function draw(name, node, key, makeOptions, data) {
  const held = charts[name];
  if (held && held.key === key) {
    held.plot.setData(data);
    return;
  }
  if (held) held.plot.destroy();
  node.replaceChildren();
  const plot = new uPlot({ width: widthOf(node), height: HEIGHT, ...makeOptions() }, data, node);
  charts[name] = { key, plot };
}

function timeChart(revenue) {
  const { seconds, unit } = BUCKETS[state.bucket];
  const rows = state.bucket === "hour" ? revenue.by_hour : revenue.by_day;
  const node = $("chart-time");
  const xLabel = `Fleet time (UTC), one bar per ${state.bucket}`;
  const yLabel = `Revenue (${revenue.currency} per ${state.bucket})`;
  $("chart-time-caption").textContent = rows.length
    ? `x: ${xLabel}, in ${unit}; y: ${yLabel}. ${rows.length} ${rows.length === 1 ? state.bucket : unit} with revenue.`
    : "No revenue yet: no task has been settled.";
  node.setAttribute("aria-label", `Bar chart. x axis: ${xLabel}. y axis: ${yLabel}.`);
  const data = [rows.map((r) => r.at_ms / 1000 + seconds / 2), rows.map((r) => euros(r.earned))]; // bars mid-bucket
  shown.time = { rows, currency: revenue.currency };
  draw("time", node, `${state.bucket}:${revenue.currency}`, () => ({
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: {
      x: { // from the buckets themselves: one bucket alone still gets a readable span
        time: true,
        range: () => {
          const held = shown.time.rows;
          if (!held.length) return [Date.now() / 1000 - seconds, Date.now() / 1000 + seconds];
          return [held[0].at_ms / 1000, held[held.length - 1].at_ms / 1000 + seconds];
        },
      },
      y: { range: (u, min, max) => [0, Math.max(1, max ?? 0) * 1.1] },
    },
    series: [
      {
        label: "Fleet time (UTC)",
        value: (u, ts, si, i) => {
          const row = i === null || i === undefined ? undefined : shown.time.rows[i];
          return row ? (state.bucket === "day" ? row.day : row.hour) : "—";
        },
      },
      {
        label: `Revenue (${revenue.currency})`,
        stroke: COLOR,
        fill: "rgba(11, 92, 173, 0.35)",
        width: 1,
        paths: uPlot.paths.bars({ size: [0.9, 120] }),
        points: { show: false },
        value: (u, v, si, i) => {
          const row = i === null || i === undefined ? undefined : shown.time.rows[i];
          return row ? `${formatMoney(row.earned, shown.time.currency)} · ${row.tasks} tasks` : "—";
        },
      },
    ],
    axes: [
      { label: xLabel, labelSize: 24, size: 56, values: axisTimes },
      { label: yLabel, labelSize: 24, size: 70, values: axisEuros },
    ],
  }), data);
}

/** A bar per item ({label, title, value} in minor units), in the given order, x labelled by name. */
function categoryChart(name, node, items, xLabel, yLabel, valueLabel, currency) {
  const labels = items.map((item) => item.label);
  node.setAttribute("aria-label", `Bar chart. x axis: ${xLabel}. y axis: ${yLabel}.`);
  const data = [items.map((_, i) => i), items.map((item) => euros(item.value))];
  shown[name] = items;
  draw(name, node, `${labels.join("\u0000")}:${currency}`, () => ({
    scales: {
      x: { time: false, range: () => [-0.5, Math.max(0, labels.length - 1) + 0.5] },
      y: { range: (u, min, max) => [0, Math.max(1, max ?? 0) * 1.1] },
    },
    series: [
      { label: xLabel.split(" ")[0], value: (u, i) => (i === null || !shown[name][i] ? "—" : shown[name][i].title) },
      {
        label: valueLabel,
        stroke: COLOR,
        fill: "rgba(11, 92, 173, 0.35)",
        width: 1,
        paths: uPlot.paths.bars({ size: [0.7, 60] }),
        points: { show: false },
        value: (u, v, si, i) => (i === null || !shown[name][i] ? "—" : formatMoney(shown[name][i].value, currency)),
      },
    ],
    axes: [
      {
        label: xLabel,
        labelSize: 24,
        size: labels.length > 8 ? 100 : 50,
        rotate: labels.length > 8 ? -50 : 0,
        space: 16,
        incrs: [1, 2, 5, 10, 20, 50, 100],
        values: (u, splits) => splits.map((i) => (Number.isInteger(i) && shown[name][i] ? shown[name][i].label : "")),
        grid: { show: false },
      },
      { label: yLabel, labelSize: 24, size: 70, values: axisEuros },
    ],
  }), data);
}

function robotLabel(row) {
  return row.name || (row.robot ? shortDid(row.robot) : "(no robot named)");
}

function memberLabel(row) {
  return row.name || shortDid(row.member);
}

/** A name with its DID as the tooltip; a link for a robot. */
function named(label, did, href) {
  if (!did) return el("span", {}, label);
  return el(href ? "a" : "span", { class: "named", title: did, href: href ?? null, "data-did": did }, label);
}

// --- tables ------------------------------------------------------------------------------------------------

function robotRow(row, currency) {
  return el("tr", { "data-robot": row.robot ?? "" },
    el("td", {}, named(robotLabel(row), row.robot, row.robot ? robotHref(row.robot) : null)),
    el("td", { class: "num", "data-field": "tasks" }, row.tasks),
    el("td", { class: "num", "data-field": "earned" }, formatMoney(row.earned, currency)),
  );
}

function memberRow(member, currency) {
  const money = (field) => el("td", { class: "num", "data-field": field }, formatMoney(member[field], currency));
  return el("tr", { "data-member": member.member },
    el("td", {}, named(memberLabel(member), member.member)),
    el("td", { class: "num", "data-field": "shares" }, member.shares),
    money("distributed"),
    money("claimed"),
    money("claimable"),
  );
}

function taskRow(task, currency) {
  return el("tr", { "data-task": task.task, "data-seq": task.seq },
    el("td", { "data-field": "task" }, task.task),
    el("td", { "data-field": "robot" }, named(robotLabel(task), task.robot, task.robot ? robotHref(task.robot) : null)),
    el("td", { class: "num", "data-field": "price" }, formatMoney(task.price, currency)),
    el("td", { class: "num", "data-field": "fee" }, formatMoney(task.fee, currency)),
    el("td", { class: "num", "data-field": "earned" }, formatMoney(task.earned, currency)),
    el("td", { "data-field": "settled_at_ms" }, formatTime(task.settled_at_ms)),
  );
}

const SORT_VALUE = {
  task: (t) => t.task,
  robot: (t) => robotLabel(t),
  price: (t) => t.price,
  fee: (t) => t.fee,
  earned: (t) => t.earned,
  settled_at_ms: (t) => t.settled_at_ms,
};
const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

function compare(a, b) {
  return typeof a === "number" && typeof b === "number" ? a - b : collator.compare(String(a), String(b));
}

function renderTasks() {
  const currency = state.revenue?.currency ?? "EUR";
  const needle = state.search.trim().toLowerCase();
  const shown = needle
    ? state.tasks.filter((t) => [t.task, t.name, t.robot].some((text) => text && text.toLowerCase().includes(needle)))
    : state.tasks.slice();
  const value = SORT_VALUE[state.sort.key];
  const sign = state.sort.descending ? -1 : 1;
  shown.sort((a, b) => sign * compare(value(a), value(b)) || b.seq - a.seq);
  fillTable($("tasks"), shown.map((t) => taskRow(t, currency)),
    needle ? `No task matches “${state.search.trim()}”.` : "No task has paid the DAO yet.");
  const held = state.totalTasks > state.tasks.length ? ` (the newest ${state.tasks.length} of ${state.totalTasks}; the CSV has them all)` : "";
  $("task-count").textContent = `${shown.length} of ${state.tasks.length} tasks shown${held}`;
  for (const th of $("tasks").tHead.rows[0].cells) {
    if (th.dataset.sort === state.sort.key) th.setAttribute("aria-sort", state.sort.descending ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
}

// --- the fleet's clock -------------------------------------------------------------------------------------

function describeClock(status) {
  const node = $("fleet-clock");
  const base = "Times on this page are fleet time: the simulation's clock (UTC), which the ledger stamps on each entry";
  if (typeof status.clock_s !== "number") {
    node.textContent = `${base}. The fleet is not running here, so how fast its clock ran is not known; it may be ahead of the wall clock.`;
    return;
  }
  const now = Date.now();
  state.clock.push([now, status.clock_s]);
  while (state.clock.length > 2 && now - state.clock[0][0] > 60_000) state.clock.shift();
  let speed = typeof status.speed === "number" ? status.speed : null;
  const [first] = state.clock;
  if (speed === null && now - first[0] >= 2000) speed = (status.clock_s - first[1]) / ((now - first[0]) / 1000);
  const ahead = status.clock_s - now / 1000;
  const rate = speed === null ? "running at a speed still being measured…"
    : `running ${speed.toFixed(speed < 10 ? 1 : 0)}× the wall clock`;
  const lead = Math.abs(ahead) < 60 ? "level with this computer's clock"
    : `${formatDuration(Math.abs(ahead))} ${ahead > 0 ? "ahead of" : "behind"} this computer's clock`;
  node.textContent = `Times on this page are fleet time: the simulation's clock, ${rate} (the ledger stamps each entry `
    + `with it). It is now ${formatTime(status.clock_s * 1000)} in fleet time, ${lead}.`;
  node.dataset.speed = speed === null ? "" : speed.toFixed(2);
}

function formatDuration(seconds) {
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} hours`;
  return `${(seconds / 86_400).toFixed(1)} days`;
}

// --- the page ----------------------------------------------------------------------------------------------

function render(revenue) {
  state.revenue = revenue;
  const money = (minor) => formatMoney(minor, revenue.currency);
  $("revenue-earned").textContent = money(revenue.earned);
  $("revenue-fees").textContent = money(revenue.fees);
  $("revenue-as-of").textContent = revenue.as_of;
  for (const account of ACCOUNTS) $(`account-${account}`).textContent = money(revenue.accounts[account]);
  $("revenue-split").textContent = Object.entries(revenue.split).map(([to, bps]) => `${to} ${formatBps(bps)}`).join(" · ");
  timeChart(revenue);
  categoryChart("robot", $("chart-robot"),
    revenue.by_robot.map((r) => ({ label: robotLabel(r), title: `${robotLabel(r)} · ${r.robot ?? "no DID"} · ${r.tasks} tasks`, value: r.earned })),
    "Robot (by name)", `Earned (${revenue.currency})`, `Earned (${revenue.currency})`, revenue.currency);
  categoryChart("member", $("chart-member"),
    revenue.by_member.map((m) => ({ label: memberLabel(m), title: `${memberLabel(m)} · ${m.member} · ${m.shares} shares`, value: m.distributed })),
    "Member (by name)", `Distributed (${revenue.currency})`, `Distributed (${revenue.currency})`, revenue.currency);
  fillTable($("robots"), revenue.by_robot.map((r) => robotRow(r, revenue.currency)), "The DAO has no robot yet.");
  fillTable($("members"), revenue.by_member.map((m) => memberRow(m, revenue.currency)), "No members yet.");
}

async function refresh() {
  try {
    const [revenue, tasks] = await Promise.all([getJSON("/api/revenue"), getJSON(`/api/revenue/tasks?limit=${TASKS_SHOWN}`)]);
    render(revenue);
    state.tasks = tasks.tasks;
    state.totalTasks = tasks.total;
    renderTasks();
    $("revenue-error").textContent = "";
    document.body.dataset.revenueAsOf = revenue.as_of; // tests wait for this
  } catch (err) {
    $("revenue-error").textContent = `Could not load the revenue: ${describeError(err)}`;
  }
}

function setBucket(bucket) {
  state.bucket = bucket;
  for (const button of document.querySelectorAll("[data-bucket]")) {
    button.setAttribute("aria-pressed", String(button.dataset.bucket === bucket));
  }
  if (state.revenue) timeChart(state.revenue);
}

initPage();
onEvent("status", describeClock);
for (const button of document.querySelectorAll("[data-bucket]")) button.addEventListener("click", () => setBucket(button.dataset.bucket));
$("task-search").addEventListener("input", (event) => {
  state.search = event.target.value;
  renderTasks();
});
for (const th of $("tasks").tHead.rows[0].cells) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.sort;
    state.sort = { key, descending: state.sort.key === key ? !state.sort.descending : key === "settled_at_ms" || ["price", "fee", "earned"].includes(key) };
    renderTasks();
  });
}
window.addEventListener("resize", () => {
  for (const { plot } of Object.values(charts)) plot.setSize({ width: widthOf(plot.root.parentElement), height: HEIGHT });
});
setInterval(refresh, REFRESH_MS);
refresh();
