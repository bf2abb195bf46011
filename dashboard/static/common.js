// Shared by every page: JSON requests, formatting, DOM building, the nav bar and the live status strip.

const PAGES = [
  ["/", "Map"],
  ["/robots", "Robots"],
  ["/market", "Market"],
  ["/revenue", "Revenue"],
  ["/dao", "DAO"],
  ["/ledger", "Ledger"],
  ["/docs", "API"],
];

/** An HTTP or network failure, carrying the API's error code, message and hint. */
export class ApiError extends Error {
  constructor(status, code, message, hint) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

async function request(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new ApiError(0, "network", `${url}: the server did not answer`);
  }
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  if (response.ok && data !== undefined) return data;
  const error = data?.error ?? {};
  const message = error.message
    ?? (response.ok ? `${url} did not return JSON` : `${url}: ${response.status} ${response.statusText}`);
  throw new ApiError(response.status, error.code ?? `http_${response.status}`, message, error.hint);
}

/** The parsed JSON of a GET, or an ApiError with a readable message. */
export function getJSON(url) {
  return request(url, { headers: { accept: "application/json" } });
}

/** POST already-serialized JSON text (such as a signed envelope's wire form); the parsed answer. */
export function postJSON(url, text) {
  return request(url, { method: "POST", headers: { "content-type": "application/json" }, body: text });
}

/** One line for the user: "409 already_voted: … (hint)" for API errors, the message otherwise. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return err.message;
  const status = err.status ? `${err.status} ` : "";
  return `${status}${err.code}: ${err.message}${err.hint ? ` (${err.hint})` : ""}`;
}

/** Integer minor units as "27.55 EUR" by integer arithmetic (no floating-point sums); null as "—". */
export function formatMoney(minor, currency) {
  if (minor === null || minor === undefined) return "—";
  if (!Number.isSafeInteger(minor)) throw new TypeError(`amount ${minor} is not a whole number of minor units`);
  const abs = Math.abs(minor);
  const cents = abs % 100;
  return `${minor < 0 ? "-" : ""}${(abs - cents) / 100}.${String(cents).padStart(2, "0")} ${currency}`;
}

/** Basis points as a percentage: 1500 -> "15%", 1250 -> "12.5%". */
export function formatBps(bps) {
  const rest = bps % 100;
  return `${(bps - rest) / 100}${rest ? `.${String(rest).padStart(2, "0").replace(/0$/, "")}` : ""}%`;
}

/** A fraction 0..1 as a whole percentage: 0.834 -> "83%". */
export function formatPercent(fraction) {
  return fraction === null || fraction === undefined ? "—" : `${Math.round(fraction * 100)}%`;
}

/** A number with two decimals, or "—" for one not known yet (a robot that has not reported). */
export function fixed(value) {
  return value === null || value === undefined ? "—" : value.toFixed(2);
}

/** Epoch milliseconds as "2026-11-21 14:03:05 UTC". */
export function formatTime(ms) {
  return ms === null || ms === undefined ? "—" : `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** "did:peaq:5FabcdXYZc9" -> "did:peaq:5Fab…c9"; short DIDs unchanged. */
export function shortDid(did) {
  const cut = did.lastIndexOf(":") + 1;
  const id = did.slice(cut);
  return id.length <= 8 ? did : `${did.slice(0, cut)}${id.slice(0, 4)}…${id.slice(-2)}`;
}

/** The page of one robot; colons stay readable in the path. */
export function robotHref(did) {
  return `/robots/${encodeURIComponent(did).replaceAll("%3A", ":")}`;
}

/** An element with attributes (null ones skipped) and children (nodes or text; null ones skipped). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return node;
}

/** A short DID with the full one as its tooltip. */
export function didText(did) {
  return did ? el("span", { class: "did", title: did }, shortDid(did)) : "—";
}

/** A short DID linking to the robot's page. */
export function robotLink(did) {
  return did ? el("a", { class: "did", href: robotHref(did), title: did }, shortDid(did)) : "—";
}

/** Replace a table's body with ``rows``, or with one row saying ``emptyText`` when there are none. */
export function fillTable(table, rows, emptyText) {
  const columns = table.tHead.rows[0].cells.length;
  table.tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: columns }, emptyText))]),
  );
}

/** Show a message in ``node``, marked ok (true), failed (false) or pending (null) for styling and tests. */
export function showResult(node, text, ok) {
  node.textContent = text;
  node.dataset.ok = ok === null ? "pending" : String(ok);
}

// One EventSource per page, shared by every subscriber.
const handlers = new Map(); // event name -> Set of functions
let source = null;

function setConnection(text, state) {
  const node = document.querySelector("#status .connection");
  if (node) {
    node.textContent = text;
    node.dataset.state = state;
  }
}

function dispatch(name) {
  source.addEventListener(name, (event) => {
    const data = JSON.parse(event.data);
    for (const fn of handlers.get(name)) fn(data);
  });
}

function connect() {
  source = new EventSource("/api/events");
  for (const name of handlers.keys()) dispatch(name);
  source.addEventListener("open", () => setConnection("live", "live"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) { // the server refused the stream: the browser will not retry
      setConnection("disconnected, retrying…", "offline");
      setTimeout(connect, 5000);
    } else {
      setConnection("reconnecting…", "reconnecting");
    }
  });
}

/** Call ``fn(data)`` for every server-sent event ``name`` (status, robots, map). */
export function onEvent(name, fn) {
  if (!handlers.has(name)) {
    handlers.set(name, new Set());
    if (source) dispatch(name);
  }
  handlers.get(name).add(fn);
  if (!source) connect();
}

function renderNav(nav) {
  const path = location.pathname;
  nav.replaceChildren(
    el("span", { class: "brand" }, "DePAI fleet"),
    ...PAGES.map(([href, label]) => {
      const active = href === "/" ? path === "/" : path === href || path.startsWith(`${href}/`);
      return el("a", { href, class: active ? "active" : null, "aria-current": active ? "page" : null }, label);
    }),
  );
}

function figure(field, label, value, title) {
  return el("span", { class: "figure", title }, `${label} `, el("b", { "data-field": field }, value));
}

function renderStatus(strip, status) {
  const figures = strip.querySelector(".figures");
  const shown = [
    figure("robots", "robots", status.robots),
    figure("posted", "tasks posted", status.tasks.posted),
    figure("settled", "settled", status.tasks.settled),
    figure("earned", "earned", formatMoney(status.revenue.earned, status.revenue.currency)),
  ];
  // A dashboard over a ledger alone checks no messages and runs no clock: it shows neither figure.
  if (status.refused !== undefined) {
    const refused = Object.entries(status.refused);
    shown.push(figure("refused", "refused", refused.reduce((sum, [, count]) => sum + count, 0),
      refused.map(([reason, count]) => `${reason}: ${count}`).join(", ") || "no messages refused"));
  }
  if (typeof status.sim_s === "number") shown.push(figure("sim", "sim", `${status.sim_s.toFixed(1)} s`));
  figures.replaceChildren(...shown);
}

/** Draw the nav bar and start the status strip; every page calls this first. */
export function initPage() {
  renderNav(document.getElementById("nav"));
  const strip = document.getElementById("status");
  strip.replaceChildren(
    el("span", { class: "connection", "data-state": "connecting" }, "connecting…"),
    el("span", { class: "figures" }),
  );
  onEvent("status", (status) => renderStatus(strip, status));
}
