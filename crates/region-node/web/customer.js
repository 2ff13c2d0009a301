// The customer app (`/`): fridges near a point on a plan drawn from their
// coordinates, live stock, nutrition facts, ordering with an undo window,
// the pickup code, order history and weekly plans. Talks only to /v1.
import { token, setToken, claims, api, liveSocket, el, money, announce, newKey } from "/web/larder.js";

// Campus Martius, the demo district's centre: where the page looks first.
const DEFAULT_POINT = { lat: 42.3316, lon: -83.0466, name: "Campus Martius" };
const SVG_NS = "http://www.w3.org/2000/svg";
const PLAN_SIZE = 320;
const PLAN_MARGIN = 18;
// Statuses after which nothing more happens to an order.
const FINAL = new Set(["picked_up", "cancelled", "refused", "refunded", "unclaimed"]);
const STATUS_WORDS = {
  held: "Reserved for you. Payment starts when the undo window ends.",
  paying: "Paying…",
  purchased: "Paid. Show the pickup code at the fridge.",
  picked_up: "Picked up. Enjoy!",
  cancelled: "Cancelled. Nothing was charged.",
  refused: "Payment refused.",
  refunded: "Refunded.",
  unclaimed: "Not picked up in time.",
  scheduled: "Scheduled with the kitchen.",
  prepared: "Prepared by the kitchen.",
  dispatched: "On its way to the fridge.",
  available: "In the fridge. Show the pickup code at the fridge.",
};

const state = {
  point: { ...DEFAULT_POINT },
  radius: 2000,
  catalog: null,
  catalogSeq: 0,
  // Stock pushed while a catalog fetch is under way: applied on top of it.
  freshStock: new Map(),
  fridgeId: null,
  mealDetails: new Map(),
  orders: new Map(),
  // Node clock minus this browser's clock (ms), from a placed order's
  // `held` time, so the countdown is right on a node with a dev clock.
  skewMs: 0,
  card: null,
  socket: null,
  // The last GET /v1/subscriptions answer.
  plans: null,
};

const $ = (id) => document.getElementById(id);

// ---- where: the point, the catalog, the plan and the list ----------------

async function loadCatalog() {
  const { lat, lon } = state.point;
  const seq = ++state.catalogSeq;
  state.freshStock = new Map();
  try {
    const catalog = await api("GET", `/v1/catalog?lat=${lat}&lon=${lon}&radius_m=${state.radius}`);
    if (seq !== state.catalogSeq) return;
    state.catalog = catalog;
    for (const msg of state.freshStock.values()) setAvailable(msg);
    renderPlan();
    renderFridgeList();
    if (state.fridgeId) renderFridge();
    // Names of fridges and meals in the history and plans come from here.
    if (state.orders.size) renderOrders();
    if (state.plans) renderPlans(state.plans);
    if (!document.body.dataset.catalog) performance.mark("fridges-shown");
    document.body.dataset.catalog = "loaded";
  } catch (e) {
    if (e.status === 421 && e.body && e.body.error && e.body.error.url) {
      misdirected(e.body.error);
    } else {
      failed("Could not load the fridges", e);
    }
  }
}

// Another district's node serves this point: say where, with a link.
function misdirected(err) {
  announce(`Another district (${err.district_id}) serves this point.`, "error");
  const box = $("alternatives");
  box.replaceChildren(el("a", { href: err.url + "/" }, `Open ${err.district_id}'s page`));
  box.hidden = false;
}

function fridge(id) {
  return state.catalog && state.catalog.fridges.find((f) => f.fridge_id === id);
}

function units(f) {
  return f.meals.reduce((n, m) => n + m.available, 0);
}

function distance(m) {
  return m < 1000 ? `${m} m` : `${(m / 1000).toFixed(1)} km`;
}

function fridgeSummary(f) {
  return `${distance(f.distance_m)} · ${f.status} · ${units(f)} meals in stock`;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

// Equirectangular projection around the point: metres east and north,
// scaled so the search radius fills the plan. North is up.
function project(lat, lon) {
  const p = state.point;
  const east = (lon - p.lon) * 111320 * Math.cos((p.lat * Math.PI) / 180);
  const north = (lat - p.lat) * 110540;
  const scale = (PLAN_SIZE / 2 - PLAN_MARGIN) / state.radius;
  return { x: PLAN_SIZE / 2 + east * scale, y: PLAN_SIZE / 2 - north * scale };
}

function renderPlan() {
  const c = PLAN_SIZE / 2;
  const r = c - PLAN_MARGIN;
  const plan = $("plan");
  const title = $("plan-title");
  plan.replaceChildren(title);
  plan.append(
    svg("circle", { cx: c, cy: c, r, class: "reach" }),
    svg("text", { x: c, y: PLAN_MARGIN - 5, class: "reach-label", "text-anchor": "middle" }, `N ↑ · ${distance(state.radius)}`),
    svg("path", { d: `M${c - 7} ${c}h14M${c} ${c - 7}v14`, class: "here" }),
    svg("text", { x: c + 9, y: c - 8, class: "here-label" }, state.point.name),
  );
  state.catalog.fridges.forEach((f, i) => plan.append(pin(f, i + 1)));
}

// A fridge on the plan: a focusable link (Enter opens it) with its number
// in the list beside it.
function pin(f, n) {
  const { x, y } = project(f.lat, f.lon);
  const chosen = f.fridge_id === state.fridgeId;
  const a = svg(
    "a",
    {
      href: "#fridge",
      class: `pin ${f.status}${chosen ? " chosen" : ""}`,
      "data-fridge-id": f.fridge_id,
      "aria-label": `${n}. ${f.name}, ${fridgeSummary(f)}`,
    },
    svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 11 }),
    svg("text", { x: x.toFixed(1), y: (y + 4).toFixed(1), "text-anchor": "middle" }, String(n)),
  );
  a.addEventListener("click", (e) => {
    e.preventDefault();
    chooseFridge(f.fridge_id);
  });
  return a;
}

function renderFridgeList() {
  const list = $("fridges");
  const fridges = state.catalog.fridges;
  if (!fridges.length) {
    list.replaceChildren(el("li", { class: "muted" }, "No fridge within this distance. Try a larger one."));
    return;
  }
  list.replaceChildren(
    ...fridges.map((f, i) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: `fridge-choice ${f.status}`,
            "data-fridge-id": f.fridge_id,
            "aria-pressed": String(f.fridge_id === state.fridgeId),
            onclick: () => chooseFridge(f.fridge_id),
          },
          el("span", { class: "num", "aria-hidden": "true" }, String(i + 1)),
          el("span", { class: "fname" }, f.name),
          el("span", { class: "fmeta" }, `${f.address} · `, el("span", { class: "fridge-summary", "data-fridge-id": f.fridge_id }, fridgeSummary(f))),
        ),
      ),
    ),
  );
}

function chooseFridge(id) {
  state.fridgeId = id;
  renderPlan();
  renderFridgeList();
  renderFridge();
  $("fridge").hidden = false;
  $("fridge-name").focus();
}

// ---- a fridge's meals ----------------------------------------------------

function renderFridge() {
  const f = fridge(state.fridgeId);
  if (!f) {
    $("fridge").hidden = true;
    return;
  }
  $("fridge").dataset.fridgeId = f.fridge_id;
  $("fridge-name").textContent = f.name;
  $("fridge-info").textContent = `${f.address} · ${distance(f.distance_m)} · ${f.status}`;
  const meals = $("meals");
  if (!f.meals.length) {
    meals.replaceChildren(el("li", { class: "muted" }, "Nothing in this fridge right now."));
    return;
  }
  meals.replaceChildren(...f.meals.map((m) => mealItem(f, m)));
  for (const m of f.meals) loadMealDetails(m.meal_id);
}

function priceLine(m) {
  if (m.price_now !== undefined && m.price_now !== m.price) {
    return el("span", { class: "price" }, el("del", {}, money(m.price, m.currency)), " ", el("strong", { class: "price-now" }, money(m.price_now, m.currency)));
  }
  return el("span", { class: "price" }, money(m.price, m.currency));
}

function mealItem(f, m) {
  const qtyId = `qty-${m.meal_id}`;
  return el(
    "li",
    { class: "meal", "data-meal-id": m.meal_id },
    el("div", { class: "meal-head" }, el("strong", { class: "meal-name" }, m.name), priceLine(m)),
    el(
      "p",
      { class: "stock" },
      el("span", { class: "count", "data-fridge-id": f.fridge_id, "data-meal-id": m.meal_id }, String(m.available)),
      " available",
    ),
    el("p", { class: "allergens muted", "data-meal-id": m.meal_id }, "Allergens: …"),
    el(
      "details",
      { class: "nutrition", "data-meal-id": m.meal_id },
      el("summary", {}, "Nutrition facts"),
      el("div", { class: "facts" }, "Loading…"),
    ),
    el(
      "div",
      { class: "order-row" },
      el("label", { for: qtyId }, "Quantity"),
      el("input", { id: qtyId, class: "qty", type: "number", min: 1, max: 10, value: 1, inputmode: "numeric" }),
      el(
        "button",
        {
          type: "button",
          class: "primary order",
          "data-meal-id": m.meal_id,
          disabled: m.available === 0 || f.status !== "online",
          "aria-label": `Order ${m.name}`,
          onclick: (e) => placeOrder(m.meal_id, e.currentTarget),
        },
        m.available === 0 ? "Sold out" : "Order",
      ),
    ),
  );
}

async function loadMealDetails(mealId) {
  let meal = state.mealDetails.get(mealId);
  if (!meal) {
    try {
      meal = await api("GET", `/v1/meals/${encodeURIComponent(mealId)}`);
    } catch (e) {
      failed("Could not load a meal's details", e);
      return;
    }
    state.mealDetails.set(mealId, meal);
  }
  const allergens = document.querySelector(`#meals .allergens[data-meal-id="${mealId}"]`);
  if (allergens) allergens.textContent = meal.allergens.length ? `Allergens: ${meal.allergens.join(", ")}` : "No listed allergens";
  const details = document.querySelector(`#meals details[data-meal-id="${mealId}"] .facts`);
  if (details) details.replaceChildren(nutritionFacts(meal));
}

function grams(mg) {
  return `${(mg / 1000).toFixed(1)} g`;
}

function nutritionFacts(meal) {
  const n = meal.nutrition;
  const rows = [
    ["Energy", `${n.kcal} kcal`],
    ["Protein", grams(n.protein_mg)],
    ["Fat", grams(n.fat_mg)],
    ["Carbohydrate", grams(n.carbs_mg)],
    ["of which sugars", grams(n.sugar_mg)],
    ["Salt", grams(n.salt_mg)],
  ];
  return el(
    "div",
    { class: "nutrition-facts" },
    meal.description ? el("p", {}, meal.description) : null,
    el(
      "table",
      {},
      el("caption", { class: "sr-only" }, `Nutrition facts of ${meal.name}, per meal`),
      el("tbody", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", { class: "num" }, v)))),
    ),
    meal.ingredients.length ? el("p", { class: "muted" }, `Ingredients: ${meal.ingredients.join(", ")}`) : null,
  );
}

// ---- live stock ----------------------------------------------------------

// A pushed absolute count: the model, the count on the page, the fridge's
// summary and whether the meal can be ordered.
function setAvailable(msg) {
  const f = fridge(msg.fridge_id);
  const m = f && f.meals.find((x) => x.meal_id === msg.meal_id);
  if (!m) return false;
  m.available = msg.available;
  if (msg.price_now !== undefined && msg.price_now !== m.price_now) {
    m.price_now = msg.price_now;
    const price = document.querySelector(`#fridge[data-fridge-id="${msg.fridge_id}"] li[data-meal-id="${msg.meal_id}"] .price`);
    if (price) price.replaceWith(priceLine(m));
  }
  for (const c of document.querySelectorAll(`.count[data-fridge-id="${msg.fridge_id}"][data-meal-id="${msg.meal_id}"]`)) {
    c.textContent = String(msg.available);
  }
  for (const s of document.querySelectorAll(`.fridge-summary[data-fridge-id="${msg.fridge_id}"]`)) {
    s.textContent = fridgeSummary(f);
  }
  if (msg.fridge_id === state.fridgeId) {
    const button = document.querySelector(`#meals button.order[data-meal-id="${msg.meal_id}"]`);
    if (button && !button.classList.contains("busy")) {
      button.disabled = m.available === 0 || f.status !== "online";
      button.textContent = m.available === 0 ? "Sold out" : "Order";
    }
  }
  return true;
}

function onStock(msg) {
  state.freshStock.set(`${msg.fridge_id} ${msg.meal_id}`, msg);
  // A meal new to a fridge in view: the catalog knows its name and price.
  if (!setAvailable(msg) && fridge(msg.fridge_id)) loadCatalog();
}

function onPush(msg) {
  switch (msg.type) {
    case "subscribed":
      document.body.dataset.live = "subscribed";
      $("who").dataset.live = "on";
      break;
    case "stock":
      onStock(msg);
      break;
    case "catalog_updated":
      loadCatalog();
      break;
    case "resync":
      loadCatalog();
      if (token()) loadOrders();
      break;
    case "order":
      onOrderPush(msg);
      break;
    case "error":
      announce(`Live updates: ${msg.message}`, "error");
      break;
  }
}

function openSocket() {
  if (state.socket) state.socket.close();
  document.body.dataset.live = "connecting";
  const area = { lat: state.point.lat, lon: state.point.lon, radius_m: state.radius };
  state.socket = liveSocket({ areas: [area], orders: Boolean(token()) }, onPush, (s) => {
    if (s === "closed") {
      document.body.dataset.live = "closed";
      $("who").dataset.live = "off";
    }
  });
}

// ---- ordering ------------------------------------------------------------

function quantity(mealId) {
  const input = $(`qty-${mealId}`);
  const n = input ? Number.parseInt(input.value, 10) : 1;
  return Number.isFinite(n) && n > 0 ? n : 1;
}

async function placeOrder(mealId, button) {
  if (!token()) {
    showSignin("Sign in to order: open this page with your token, or paste it below.");
    return;
  }
  const body = { fridge_id: state.fridgeId, items: [{ meal_id: mealId, qty: quantity(mealId) }] };
  const method = $("payment-method").value.trim();
  if (method) body.payment_method = method;
  button.disabled = true;
  button.classList.add("busy");
  const sentAt = Date.now();
  try {
    const accepted = await api("POST", "/v1/orders", body, { "idempotency-key": newKey() });
    clearAlternatives();
    await showPlaced(accepted, body, sentAt);
  } catch (e) {
    orderFailed(e, body);
  } finally {
    button.classList.remove("busy");
    const m = fridge(body.fridge_id)?.meals.find((x) => x.meal_id === mealId);
    button.disabled = !m || m.available === 0;
  }
}

// The order just placed, read back for its `held` time on the node's clock
// (the countdown's reference) and its lines.
async function showPlaced(accepted, body, sentAt) {
  let order;
  try {
    order = await api("GET", `/v1/orders/${encodeURIComponent(accepted.order_id)}`);
    const held = order.history.find((h) => h.status === "held");
    if (held) state.skewMs = Date.parse(held.at) - sentAt;
  } catch {
    const lines = body.items.map((i) => ({ ...i, name: mealName(i.meal_id) }));
    order = { ...accepted, fridge_id: body.fridge_id, lines, history: [] };
  }
  rememberOrder(order);
  showOrder(order);
}

// Why an order was refused, in plain words, with the node's own message.
function orderFailed(e, body) {
  const err = (e.body && e.body.error) || {};
  switch (e.code) {
    case "insufficient_stock":
      announce(`Not enough left here, nothing was ordered: ${shortWords(err, body.fridge_id)}. (${e.message})`, "error");
      offerAlternatives(err);
      break;
    case "fridge_unavailable":
      announce(`This fridge cannot sell right now, nothing was ordered. (${e.message})`, "error");
      break;
    case "unauthenticated":
    case "invalid_token":
      showSignin(`Your token was not accepted: sign in again. (${e.message})`);
      break;
    default:
      if (e.status === 429) {
        const wait = err.retry_after_secs ? ` Try again in ${err.retry_after_secs} s.` : "";
        announce(`Too many orders for now.${wait} (${e.message})`, "error");
      } else {
        failed("The order was not placed", e);
      }
  }
}

function mealName(id) {
  for (const f of state.catalog ? state.catalog.fridges : []) {
    const m = f.meals.find((x) => x.meal_id === id);
    if (m) return m.name;
  }
  return state.mealDetails.get(id)?.name || id;
}

function shortWords(err, fridgeId) {
  const left = Array.isArray(err.available) ? err.available : [];
  return left.map((a) => `${a.available} ${mealName(a.meal_id)} at ${fridge(fridgeId)?.name || fridgeId}`).join(", ") || "sold out";
}

// The 409's alternatives (other fridges that have the meal now) as buttons
// that open that fridge, and the waitlist offers.
function offerAlternatives(err) {
  const box = $("alternatives");
  const alts = (err.alternatives || []).map((a) =>
    el(
      "li",
      { "data-fridge-id": a.fridge_id },
      el(
        "button",
        { type: "button", class: "alternative", "data-fridge-id": a.fridge_id, onclick: () => openAlternative(a.fridge_id) },
        `${a.name} (${distance(a.distance_m)}): `,
        a.meals.map((m) => `${m.available} ${mealName(m.meal_id)}`).join(", "),
      ),
    ),
  );
  const waits = (err.waitlist || []).map((w) =>
    el("li", {}, el("button", { type: "button", class: "wait", onclick: (e) => joinWaitlist(w, e.currentTarget) }, `Tell me when ${mealName(w.meal_id)} is back here`)),
  );
  box.replaceChildren(
    el("p", {}, alts.length ? "Nearby fridges that have it now:" : "No nearby fridge has it now."),
    el("ul", { class: "alternatives-list" }, ...alts, ...waits),
  );
  box.hidden = false;
}

function clearAlternatives() {
  $("alternatives").hidden = true;
  $("alternatives").replaceChildren();
}

async function openAlternative(fridgeId) {
  clearAlternatives();
  if (!fridge(fridgeId)) {
    // Outside the radius shown: widen it to the largest choice.
    $("radius").value = "10000";
    state.radius = 10000;
    await loadCatalog();
    openSocket();
  }
  if (fridge(fridgeId)) chooseFridge(fridgeId);
}

async function joinWaitlist(body, button) {
  button.disabled = true;
  try {
    await api("POST", "/v1/waitlist", body);
    announce(`You are on the waitlist for ${mealName(body.meal_id)}: you will be offered one when it is back.`);
  } catch (e) {
    button.disabled = false;
    failed("Could not join the waitlist", e);
  }
}

// ---- the order card: status, countdown, undo, pickup code -----------------

function showOrder(order) {
  stopCountdown();
  state.card = { orderId: order.order_id, announcedEnd: false, timer: null };
  const card = $("order-card");
  card.dataset.orderId = order.order_id;
  card.replaceChildren(
    el("p", { class: "order-what" }, orderWhat(order)),
    el("p", {}, "Status: ", el("span", { class: "status" }, order.status), " ", el("span", { class: "status-words" })),
    el("p", { id: "countdown", class: "countdown", hidden: true }),
    el("button", { id: "undo", type: "button", class: "undo", hidden: true, onclick: undo }, "Undo"),
    el("p", { class: "pickup", hidden: true }, "Pickup code ", el("span", { class: "pickup-code" })),
    el("p", { class: "refusal", hidden: true }),
  );
  $("order").hidden = false;
  updateCard(order);
  if (order.status === "held" && order.hold_until) {
    const left = Math.max(0, Math.round((Date.parse(order.hold_until) - state.skewMs - Date.now()) / 1000));
    announce(`Order placed. You can undo it for ${left} seconds.`);
    startCountdown(Date.parse(order.hold_until) - state.skewMs);
  }
  // Keyboard users land on the card: the next Tab reaches Undo.
  $("order-title").focus();
}

function orderWhat(order) {
  const lines = (order.lines || []).map((l) => `${l.qty} × ${l.name}`).join(", ");
  const where = fridge(order.fridge_id)?.name || order.fridge_id;
  return `${lines} at ${where} · ${money(order.total, order.currency)}`;
}

function updateCard(order) {
  const card = $("order-card");
  if (!state.card || state.card.orderId !== order.order_id) return;
  card.dataset.status = order.status;
  card.querySelector(".status").textContent = order.status;
  const words = order.status === "refused" ? `Payment refused (${order.refusal_reason || "declined"}). Nothing was charged.` : STATUS_WORDS[order.status] || "";
  card.querySelector(".status-words").textContent = words;
  const pickup = card.querySelector(".pickup");
  if (order.pickup_code) card.querySelector(".pickup-code").textContent = order.pickup_code;
  pickup.hidden = !order.pickup_code || (FINAL.has(order.status) && order.status !== "picked_up");
  if (order.status !== "held") {
    stopCountdown();
    $("countdown").hidden = true;
    $("undo").hidden = true;
  }
}

function startCountdown(deadlineMs) {
  $("countdown").hidden = false;
  $("undo").hidden = false;
  const tick = () => {
    const left = Math.ceil((deadlineMs - Date.now()) / 1000);
    if (left > 0) {
      $("countdown").textContent = `Undo possible for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
      return;
    }
    stopCountdown();
    $("countdown").textContent = "Undo no longer possible";
    $("undo").hidden = true;
    if (!state.card.announcedEnd) {
      state.card.announcedEnd = true;
      announce("Undo no longer possible: paying now.");
    }
  };
  tick();
  state.card.timer = setInterval(tick, 250);
}

function stopCountdown() {
  if (state.card && state.card.timer) {
    clearInterval(state.card.timer);
    state.card.timer = null;
  }
}

async function undo() {
  const id = state.card && state.card.orderId;
  if (!id) return;
  $("undo").disabled = true;
  try {
    const order = await api("POST", `/v1/orders/${encodeURIComponent(id)}/cancel`);
    rememberOrder(order);
    updateCard(order);
    $("order-title").focus();
    announce("Order cancelled: nothing was charged.");
  } catch (e) {
    $("undo").disabled = false;
    failed("Could not undo the order", e);
  }
}

// ---- order history -------------------------------------------------------

async function loadOrders() {
  try {
    const r = await api("GET", "/v1/me/orders");
    for (const o of r.orders) keepNewer(o);
    renderOrders();
    const partial = r.districts.filter((d) => d.status === "partial");
    if (partial.length) announce(`Some orders could not be loaded: ${partial.map((d) => d.district_id).join(", ")}.`, "error");
  } catch (e) {
    failed("Could not load your orders", e);
  }
}

function lastChange(o) {
  const h = o.history || [];
  return Math.max(h.length ? Date.parse(h[h.length - 1].at) : 0, o.pushedAt || 0);
}

// A fetched order replaces what the page knows unless a push told it of a
// later change while the fetch was under way.
function keepNewer(fetched) {
  const known = state.orders.get(fetched.order_id);
  if (known && lastChange(known) > lastChange(fetched)) {
    state.orders.set(fetched.order_id, { ...fetched, ...known });
  } else {
    state.orders.set(fetched.order_id, fetched);
  }
}

function rememberOrder(order) {
  const known = state.orders.get(order.order_id) || {};
  state.orders.set(order.order_id, { ...known, ...order });
  renderOrders();
}

let reloadingOrders = null;

// A pushed status change: the card and the history move with it. An order
// this page has not seen (a plan order, one from another tab) reloads the
// list.
function onOrderPush(msg) {
  const known = state.orders.get(msg.order_id);
  if (!known) {
    reloadingOrders = reloadingOrders || loadOrders().finally(() => (reloadingOrders = null));
    return;
  }
  const next = { ...known, status: msg.status, pushedAt: Date.parse(msg.at) };
  for (const k of ["pickup_code", "pickup_deadline", "refusal_reason"]) if (msg[k] !== undefined) next[k] = msg[k];
  state.orders.set(msg.order_id, next);
  renderOrders();
  updateCard(next);
  if (state.card && state.card.orderId === msg.order_id) announceStatus(next);
}

function announceStatus(order) {
  if (order.status === "purchased" || order.status === "available") {
    announce(`Paid. Your pickup code is ${order.pickup_code || "on its way"}.`);
  } else if (order.status === "refused") {
    announce(`Payment refused (${order.refusal_reason || "declined"}). Nothing was charged.`, "error");
  }
}

function orderItem(o) {
  const when = o.history && o.history.length ? new Date(o.history[0].at).toLocaleString() : "";
  return el(
    "li",
    { "data-order-id": o.order_id, class: `order-item ${o.status}` },
    el("div", { class: "order-head" }, el("span", { class: "status badge" }, o.status), " ", el("span", { class: "order-lines" }, orderWhat(o))),
    el("p", { class: "muted" }, `${when}${o.delivery_date ? ` · for ${o.delivery_date}` : ""}`),
    o.pickup_code && !["cancelled", "refunded", "unclaimed"].includes(o.status)
      ? el("p", {}, "Pickup code ", el("span", { class: "pickup-code" }, o.pickup_code))
      : null,
  );
}

function renderOrders() {
  $("history").hidden = false;
  const list = $("orders");
  if (!state.orders.size) {
    list.replaceChildren(el("li", { class: "muted" }, "No orders yet."));
    return;
  }
  // Newest first, as the node lists them (order ids sort by time).
  const orders = [...state.orders.values()].sort((a, b) => (a.order_id < b.order_id ? 1 : -1));
  list.replaceChildren(...orders.map(orderItem));
}

// ---- weekly plans (read-only) --------------------------------------------

const WEEKDAYS = ["", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

async function loadSubscriptions() {
  try {
    const r = await api("GET", "/v1/subscriptions");
    renderPlans(r);
  } catch (e) {
    failed("Could not load your weekly plans", e);
  }
}

function renderPlans(r) {
  state.plans = r;
  $("subscriptions").hidden = false;
  const items = r.plans.map((p) =>
    el(
      "li",
      { "data-plan-id": p.plan_id, class: "plan-item" },
      el("span", { class: "status badge" }, p.status),
      " ",
      el("strong", {}, p.fridge_id ? fridge(p.fridge_id)?.name || p.fridge_id : "no terms in force"),
      el("p", { class: "plan-days" }, (p.days || []).map((d) => `${WEEKDAYS[d.weekday]}: ${mealName(d.meal_id)}`).join(" · ")),
      el("p", { class: "muted" }, `${p.start_date} to ${p.end_date}${p.paid_through ? ` · paid through ${p.paid_through}` : ""}`),
    ),
  );
  $("plans").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "No weekly plans.")]));
  if (r.credit) $("plans").append(el("li", { class: "muted" }, `Credit: ${money(r.credit, r.plans[0]?.currency || "USD")}`));
}

// ---- sign-in, errors, start-up -------------------------------------------

function failed(what, e) {
  announce(`${what}: ${e.message || e}`, "error");
}

function showSignin(message) {
  $("signin").hidden = false;
  if (message) announce(message, "error");
  $("token-input").focus();
}

function signedIn() {
  const c = claims();
  $("who").textContent = c && c.sub ? `Signed in as ${c.sub}` : "";
  $("signin").hidden = true;
  loadOrders();
  loadSubscriptions();
  loadProfile();
}

// A saved payment method pays when the field is left empty.
async function loadProfile() {
  try {
    const p = await api("GET", "/v1/me/profile");
    if (p && p.payment_method) {
      $("payment-method").value = "";
      $("payment-method").placeholder = `saved: ${p.payment_method}`;
    }
  } catch {
    // No profile (or no NATS): the sandbox card in the field pays.
  }
}

function useMyLocation() {
  if (!navigator.geolocation) {
    announce("This browser cannot tell where you are.", "error");
    return;
  }
  announce("Finding where you are…");
  navigator.geolocation.getCurrentPosition(
    (pos) => movePoint({ lat: pos.coords.latitude, lon: pos.coords.longitude, name: "You" }),
    (err) => announce(`Could not use your location: ${err.message}`, "error"),
    { timeout: 10000, maximumAge: 60000 },
  );
}

function movePoint(point) {
  state.point = { lat: Number(point.lat.toFixed(5)), lon: Number(point.lon.toFixed(5)), name: point.name };
  $("point-name").textContent = point.name === "You" ? "you" : point.name;
  announce("");
  loadCatalog();
  openSocket();
}

function start() {
  const tok = token();
  $("locate").addEventListener("click", useMyLocation);
  $("radius").addEventListener("change", (e) => {
    state.radius = Number(e.target.value);
    loadCatalog();
    openSocket();
  });
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken($("token-input").value.trim());
    $("token-input").value = "";
    signedIn();
    openSocket();
  });
  if (tok) signedIn();
  else $("signin").hidden = false;
  loadCatalog();
  openSocket();
}

start();
