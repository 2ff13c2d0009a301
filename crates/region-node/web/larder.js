// Shared by the three pages: the token, API calls, the WebSocket, and small
// DOM helpers. Plain ES module, no framework, nothing loaded from elsewhere.

const TOKEN_KEY = "larder.token";

// Errors the page met, for the browser tests (tests/src/browser.rs) and for
// anyone looking in the console.
window.larderErrors = [];
window.addEventListener("error", (e) => window.larderErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.larderErrors.push(String(e.reason)));

// The token comes in the URL fragment (`#token=…`, never sent to a server)
// and is kept for this tab only. The fragment is cleared so a copied URL or
// a screenshot does not carry it.
export function token() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const given = hash.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    hash.delete("token");
    const rest = hash.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// The claims of a token (unverified: only for showing who is signed in and
// which kitchen a kitchen token is for; the node checks every request).
export function claims(tok = token()) {
  try {
    const part = tok.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// One API call: JSON in and out; a non-2xx answer throws an ApiError with
// the node's own code and message.
export async function api(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders };
  const tok = token();
  if (tok) headers["authorization"] = "Bearer " + tok;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = (json && json.error) || {};
    throw new ApiError(res.status, err.code || "http_" + res.status, err.message || res.statusText, json);
  }
  return json;
}

// A WebSocket to `/v1/ws` that reconnects (with the last version seen as
// `since`) and re-sends the subscription. `onMessage` gets every server
// message; `status` is called with "open" | "closed".
export function liveSocket(subscription, onMessage, status = () => {}) {
  let version = null;
  let ws = null;
  let stopped = false;
  let delayMs = 500;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(scheme + "//" + location.host + "/v1/ws");
    ws.onopen = () => {
      delayMs = 500;
      const msg = { type: "subscribe", ...subscription };
      const tok = token();
      if (tok && subscription.orders) msg.token = tok;
      if (version !== null) msg.since = version;
      ws.send(JSON.stringify(msg));
      status("open");
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (typeof msg.version === "number") version = msg.version;
      onMessage(msg);
    };
    ws.onclose = () => {
      status("closed");
      if (!stopped) setTimeout(open, (delayMs = Math.min(delayMs * 2, 10000)));
    };
  };
  open();
  return {
    close() {
      stopped = true;
      if (ws) ws.close();
    },
    send(msg) {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    },
  };
}

// Builds an element: el("button", {class: "primary", onclick: f}, "Order").
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

export function money(cents, currency = "USD") {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
}

// A message in the page's live region, read out by screen readers.
export function announce(text, kind = "info") {
  const box = document.getElementById("status");
  if (!box) return;
  box.textContent = text;
  box.dataset.kind = kind;
}

// A fresh Idempotency-Key for one attempt at a write (a retry of the same
// attempt reuses it). getRandomValues works on plain-HTTP district
// networks too, where crypto.randomUUID is not available.
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const SVG_NS = "http://www.w3.org/2000/svg";

// Builds an SVG element, like el(): svg("rect", {x: 1, y: 2}, child).
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

// The node's date (YYYY-MM-DD, UTC) from its clock: with the dev clock the
// node's day is not the browser's. The browser's date if it cannot be read.
export async function nodeToday() {
  try {
    const clock = await api("GET", "/v1/dev/clock");
    return String(clock.now).slice(0, 10);
  } catch {
    return new Date().toISOString().slice(0, 10);
  }
}

// The district's date today (YYYY-MM-DD in the district's time zone, on the
// node's clock), from a route that answers for today when asked for no date
// (`field` names the date in its answer). Neither the browser's clock nor its
// time zone is the district's: at 8 p.m. in Detroit it is already tomorrow
// in UTC. Falls back to nodeToday().
export async function districtToday(path, field) {
  try {
    const answer = await api("GET", path);
    if (answer && typeof answer[field] === "string") return answer[field];
  } catch {
    // The route is missing or refused: the node's UTC date will do.
  }
  return nodeToday();
}

// `date` (YYYY-MM-DD) moved by `days`.
export function addDays(date, days) {
  const d = new Date(date + "T12:00:00Z");
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}
