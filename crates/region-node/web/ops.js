// The operations dashboard (/ops, admin token): fleet map and fridge table
// with quarantine lift, live order flow, insight charts and campaigns.
// Hand-written DOM and inline SVG; every number comes from the node's API.
import { token, api, liveSocket, el, money, announce, districtToday, addDays, svg } from "/web/larder.js";

const FLEET_EVERY_MS = 5000;
const FLOW_EVERY_MS = 4000;
const FLOW_SHOWN = 15;
const STATUS_MARK = { online: "●", offline: "○", quarantined: "■" };

let fleet = [];
let drawn = "";
let socket = null;

// ---- fleet: map and table ----

async function refreshFleet() {
  try {
    fleet = (await api("GET", "/v1/admin/fridges")).fridges;
  } catch (e) {
    announce(e.message, "error");
    return;
  }
  // Redrawn only when something changed: a redraw under the pointer or
  // the keyboard focus is a button pulled away.
  const seen = JSON.stringify(fleet);
  if (seen !== drawn) {
    drawn = seen;
    drawMap(fleet);
    drawFridgeTable(fleet);
  }
  // The node takes at most 64 subscriptions per connection (ws config);
  // the table's 5 s refresh covers any fridge past them.
  if (!socket && fleet.length) follow(fleet.slice(0, 64).map((f) => f.fridge_id));
}

// Equirectangular projection of the fleet's bounding box (a district is a
// few kilometres across: no tiles, no projection library).
function project(fridges, width, height, pad) {
  const lats = fridges.map((f) => f.lat);
  const lons = fridges.map((f) => f.lon);
  const [minLat, maxLat, minLon, maxLon] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  const kx = Math.cos(((minLat + maxLat) / 2) * (Math.PI / 180));
  const spanX = Math.max((maxLon - minLon) * kx, 1e-4);
  const spanY = Math.max(maxLat - minLat, 1e-4);
  const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
  return (f) => [pad + (f.lon - minLon) * kx * scale, height - pad - (f.lat - minLat) * scale];
}

function marker(f, [x, y]) {
  const shape =
    f.status === "quarantined"
      ? svg("rect", { x: x - 8, y: y - 8, width: 16, height: 16 })
      : svg("circle", { cx: x, cy: y, r: 8 });
  const anchor = x > 450 ? "end" : "start";
  const dx = anchor === "end" ? -12 : 12;
  return svg(
    "g",
    { class: "marker " + f.status, "data-fridge-id": f.fridge_id, "data-status": f.status, role: "img", "aria-label": `${f.name}: ${f.status}` },
    svg("title", {}, `${f.name}: ${f.status}`),
    shape,
    svg("text", { x: x + dx, y: y - 2, "text-anchor": anchor }, f.name),
    svg("text", { x: x + dx, y: y + 12, "text-anchor": anchor, class: "state" }, `${STATUS_MARK[f.status] || ""} ${f.status}`),
  );
}

function drawMap(fridges) {
  const box = document.getElementById("map");
  if (!fridges.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No fridges in this district."));
    return;
  }
  const [w, h] = [600, 480];
  const at = project(fridges, w, h, 40);
  const map = svg(
    "svg",
    { viewBox: `0 0 ${w} ${h}`, role: "group", "aria-label": `Fleet map: ${fridges.length} fridges`, id: "fleet-map" },
    fridges.map((f) => marker(f, at(f))),
  );
  box.replaceChildren(map);
}

function temperature(f) {
  if (f.excursion) {
    const c = (f.excursion.max_milli_c / 1000).toFixed(1);
    return el("span", { class: "alert" }, `above limit since ${time(f.excursion.since)} (max ${c} °C)`);
  }
  const back = [...f.notices].reverse().find((n) => n.kind === "temperature_recovered");
  if (back) return `in range; last excursion max ${(back.max_milli_c / 1000).toFixed(1)} °C until ${time(back.until)}`;
  return "in range";
}

function alerts(f) {
  const count = f.notices.filter((n) => n.kind !== "temperature_recovered").length;
  const parts = [];
  if (f.status === "quarantined") parts.push("quarantined");
  if (count) parts.push(`${count} door notice${count > 1 ? "s" : ""}`);
  return parts.length ? el("span", { class: "alert" }, parts.join(", ")) : "none";
}

function fridgeRow(f) {
  const liftButton =
    f.status === "quarantined"
      ? el("button", { class: "primary lift", type: "button", "aria-label": `Lift quarantine at ${f.name}`, onclick: () => liftQuarantine(f) }, "Lift quarantine")
      : "";
  return el(
    "tr",
    { "data-fridge-id": f.fridge_id, "data-status": f.status },
    el("th", { scope: "row" }, f.name, el("div", { class: "muted" }, f.fridge_id)),
    el("td", {}, el("span", { class: "badge status " + f.status }, `${STATUS_MARK[f.status] || ""} ${f.status}`)),
    el("td", {}, f.last_seen ? time(f.last_seen) : "never"),
    el("td", { class: "temperature" }, temperature(f)),
    el("td", { class: "alerts" }, alerts(f)),
    el("td", {}, liftButton),
  );
}

function drawFridgeTable(fridges) {
  const body = document.querySelector("#fridges tbody");
  // Keep the keyboard focus on a Lift button across a redraw.
  const focused = document.activeElement && document.activeElement.closest("tr[data-fridge-id]");
  body.replaceChildren(...fridges.map(fridgeRow));
  if (focused) {
    const again = body.querySelector(`tr[data-fridge-id="${focused.dataset.fridgeId}"] button`);
    if (again) again.focus();
  }
}

async function liftQuarantine(f) {
  announce(`Lifting the quarantine at ${f.name}…`);
  try {
    await api("POST", `/v1/admin/fridges/${encodeURIComponent(f.fridge_id)}/quarantine/lift`, {});
    announce(`Quarantine lifted at ${f.name}: online again.`);
  } catch (e) {
    announce(`${f.name}: ${e.message}`, "error");
  }
  await refreshFleet();
}

// Stock and catalog changes arrive over the WebSocket; the table is
// re-read (debounced) so statuses and alerts stay exact.
function follow(ids) {
  let pending = null;
  const live = document.getElementById("live");
  socket = liveSocket(
    { fridges: ids },
    (msg) => {
      if (msg.type !== "stock" && msg.type !== "catalog_updated" && msg.type !== "resync") return;
      clearTimeout(pending);
      pending = setTimeout(refreshFleet, 300);
    },
    (state) => {
      live.textContent = state === "open" ? "live" : "live: reconnecting";
      live.className = "badge" + (state === "open" ? "" : " offline");
    },
  );
}

// ---- live order flow ----

async function refreshFlow() {
  let orders;
  try {
    orders = (await api("GET", "/v1/orders")).orders;
  } catch (e) {
    announce(e.message, "error");
    return;
  }
  const list = document.getElementById("order-flow");
  if (!orders.length) {
    list.replaceChildren(el("li", { class: "muted" }, "No orders yet."));
    return;
  }
  list.replaceChildren(
    ...orders.slice(0, FLOW_SHOWN).map((o) => {
      const last = o.history[o.history.length - 1];
      return el(
        "li",
        { "data-order-id": o.order_id },
        el("span", { class: "badge status" }, o.status),
        el("span", {}, o.order_id),
        el("span", { class: "muted" }, o.fridge_id),
        el("span", {}, money(o.total, o.currency)),
        el("span", { class: "when" }, last ? time(last.at) : ""),
      );
    }),
  );
}

// ---- insights ----

function barChart(label, bars, cls = "") {
  const [w, h, pad] = [600, 180, 24];
  const max = Math.max(1, ...bars.map((b) => b.value));
  const step = (w - 2 * pad) / Math.max(bars.length, 1);
  const labelEvery = Math.ceil(bars.length / 12);
  return svg(
    "svg",
    { viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, class: "axis" }),
    svg("text", { x: 2, y: 12 }, String(max)),
    bars.map((b, i) => {
      const bh = ((h - 2 * pad) * b.value) / max;
      const x = pad + i * step;
      return svg(
        "g",
        {},
        svg("rect", { class: "bar " + cls, x: x + 1, y: h - pad - bh, width: Math.max(step - 2, 1), height: bh }, svg("title", {}, `${b.label}: ${b.value}`)),
        i % labelEvery === 0 ? svg("text", { x, y: h - 8 }, b.short || b.label) : null,
      );
    }),
  );
}

function processingTable(p) {
  const row = (name, m, unit) =>
    el("tr", {}, el("th", { scope: "row" }, name), el("td", { class: "num" }, m.count),
      ...["p50", "p90", "p99", "max"].map((k) => el("td", { class: "num" }, m.count ? `${m[k]} ${unit}` : "–")));
  return el(
    "table",
    { id: "processing" },
    el("caption", { class: "muted" }, "Processing times (percentiles)"),
    el("thead", {}, el("tr", {}, ...["Step", "Count", "p50", "p90", "p99", "Max"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, row("Confirm → purchased", p.confirm_to_purchased_ms, "ms"), row("Purchased → picked up", p.purchased_to_picked_up_secs, "s")),
  );
}

function drawInsights(ins) {
  const hours = ins.volumes.hours.map((h) => ({ label: `${h.date} ${String(h.hour).padStart(2, "0")}:00`, short: `${h.hour}h`, value: h.placed }));
  const waste = ins.waste.kitchens.map((k) => ({ label: `${k.kitchen_id}: ${k.shrinkage_units} units`, short: k.kitchen_id, value: k.shrinkage_units }));
  const r = ins.rates || {};
  const pct = (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)} %` : "–");
  document.getElementById("insights-body").replaceChildren(
    el("p", { class: "muted" }, `${ins.district}, ${ins.from} to ${ins.to} (${ins.time_zone}). Fulfilment ${pct(r.fulfilment)}, cancellations ${pct(r.cancellation)}, refusals ${pct(r.refusal)}, timeouts ${pct(r.timeout)}.`),
    el("h3", {}, "Orders placed per hour"),
    hours.length ? barChart(`Orders placed per hour, ${ins.from} to ${ins.to}`, hours) : el("p", { class: "muted" }, "No orders in these days."),
    processingTable(ins.processing),
    el("h3", {}, "Waste per kitchen (units)"),
    waste.length ? barChart("Waste per kitchen in units", waste, "waste") : el("p", { class: "muted" }, "No waste recorded."),
  );
}

async function refreshInsights() {
  const from = document.getElementById("insights-from").value;
  const to = document.getElementById("insights-to").value;
  const body = document.getElementById("insights-body");
  try {
    drawInsights(await api("GET", `/v1/admin/insights?from=${from}&to=${to}`));
  } catch (e) {
    // A node without the insights route answers 404: not an error here.
    if (e.status === 404) body.replaceChildren(el("p", { class: "muted", id: "insights-missing" }, "Insights not available on this node."));
    else announce(e.message, "error");
  }
}

// ---- campaigns ----

async function refreshCampaigns() {
  let campaigns;
  try {
    campaigns = (await api("GET", "/v1/admin/campaigns")).campaigns;
  } catch (e) {
    announce(e.message, "error");
    return;
  }
  const section = document.getElementById("campaigns");
  section.hidden = campaigns.length === 0;
  document.getElementById("campaign-list").replaceChildren(
    ...campaigns.map((c) =>
      el("li", { "data-campaign-id": c.campaign_id }, el("strong", {}, c.name), ` ${c.starts} → ${c.ends} `,
        el("span", { class: "badge" + (c.live ? "" : " offline") }, c.live ? "live" : c.ended ? "ended" : "planned"),
        ` ${c.redemptions} redemptions`),
    ),
  );
}

function time(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

// Periodic refreshes pause while the tab is hidden.
function every(ms, f) {
  setInterval(() => {
    if (!document.hidden) f();
  }, ms);
}

async function start() {
  if (!token()) {
    announce("Open this page with an admin token: /ops#token=…", "error");
    return;
  }
  // Insights answer for the district's today when given no range.
  const today = await districtToday("/v1/admin/insights", "to");
  document.getElementById("insights-from").value = addDays(today, -6);
  document.getElementById("insights-to").value = today;
  document.getElementById("insights-form").addEventListener("submit", (e) => {
    e.preventDefault();
    refreshInsights();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshFleet();
  });
  await Promise.all([refreshFleet(), refreshFlow(), refreshInsights(), refreshCampaigns()]);
  // Read by the browser tests: the page must be drawn within a second.
  performance.mark("larder-first-render");
  every(FLEET_EVERY_MS, refreshFleet);
  every(FLOW_EVERY_MS, refreshFlow);
}

start();
