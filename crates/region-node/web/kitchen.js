// The kitchen view (/kitchen, kitchen token): the day's deliveries with
// stage buttons, the prep report and the pick list, for today and the
// next days.
import { token, claims, api, el, announce, districtToday, addDays } from "/web/larder.js";

const DAYS_SHOWN = 4;
const STAGES = [
  { stage: "prepared", label: "Prepared" },
  { stage: "dispatched", label: "Dispatched" },
  { stage: "placed_in_fridge", label: "Placed in fridge" },
];
// What an order's status says of the stage it reached.
const REACHED = { prepared: 1, dispatched: 2, available: 3 };
const ALL = "*";

let kitchenId = null;
let day = null;

// The stage a fridge group reached (0: none yet) as this tab saw it: the
// node answers each event with the orders it moved, not a group's stage.
function stageKey(fridge) {
  return `larder.kitchen.${kitchenId}.${day}.${fridge}`;
}
function reached(fridge) {
  const own = Number(sessionStorage.getItem(stageKey(fridge)) || 0);
  return Math.max(own, Number(sessionStorage.getItem(stageKey(ALL)) || 0));
}

function dayButtons(today) {
  const box = document.getElementById("days");
  const names = ["Today", "Tomorrow"];
  box.replaceChildren(
    ...Array.from({ length: DAYS_SHOWN }, (_, i) => {
      const date = addDays(today, i);
      return el(
        "button",
        { type: "button", "data-date": date, "aria-pressed": String(date === day), onclick: () => choose(date) },
        names[i] ? `${names[i]} (${date})` : date,
      );
    }),
  );
}

async function choose(date) {
  day = date;
  document.getElementById("day-input").value = date;
  for (const b of document.querySelectorAll("#days button")) b.setAttribute("aria-pressed", String(b.dataset.date === date));
  await Promise.all([refreshPrep(), refreshPicklist()]);
}

// ---- prep report and the stage table built from it ----

async function refreshPrep() {
  const asked = day;
  let prep;
  try {
    prep = await api("GET", `/v1/kitchens/${encodeURIComponent(kitchenId)}/prep?date=${asked}`);
    // Another day was chosen meanwhile: its answer draws the table.
    if (asked !== day) return;
  } catch (e) {
    if (asked !== day) return;
    document.querySelector("#prep tbody").replaceChildren();
    document.querySelector("#stages tbody").replaceChildren();
    document.getElementById("prep-summary").textContent = "";
    announce(e.message, "error");
    return;
  }
  const rows = prep.rows || [];
  const unavailable = new Map((prep.unavailable_fridges || []).map((f) => [f.fridge_id, f.status]));
  document.getElementById("prep-summary").textContent =
    `${day}: ${prep.total_subscription_units} plan units, ${prep.total_preorder_units || 0} ordered ahead, ` +
    `${prep.total_forecast_one_off_units} forecast one-off` + (prep.working_day === false ? " — not a working day." : ".");
  document.querySelector("#prep tbody").replaceChildren(
    ...rows.map((r) =>
      el("tr", { "data-meal-id": r.meal_id, "data-fridge-id": r.fridge_id },
        el("th", { scope: "row" }, r.meal_name || r.meal_id),
        el("td", {}, r.fridge_id, unavailable.has(r.fridge_id) ? el("span", { class: "warn" }, ` (${unavailable.get(r.fridge_id)})`) : ""),
        el("td", { class: "num" }, r.subscription_units),
        el("td", { class: "num" }, r.preorder_units || 0),
        el("td", { class: "num" }, r.forecast_one_off_units)),
    ),
  );
  drawStages(rows, unavailable);
}

function drawStages(rows, unavailable) {
  const units = new Map();
  for (const r of rows) {
    const firm = r.subscription_units + (r.preorder_units || 0);
    if (firm > 0) units.set(r.fridge_id, (units.get(r.fridge_id) || 0) + firm);
  }
  const body = document.querySelector("#stages tbody");
  if (!units.size) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No orders to deliver on this day.")));
    return;
  }
  const total = [...units.values()].reduce((a, b) => a + b, 0);
  // All fridges are as far as the least advanced one.
  const allAt = Math.min(...[...units.keys()].map(reached));
  body.replaceChildren(
    ...[...units].map(([fridge, n]) => stageRow(fridge, fridge + (unavailable.has(fridge) ? ` (${unavailable.get(fridge)})` : ""), n, reached(fridge))),
    stageRow(ALL, "All fridges", total, Math.max(allAt, reached(ALL))),
  );
}

function stageRow(fridge, name, units, at) {
  const where = fridge === ALL ? "all fridges" : fridge;
  return el(
    "tr",
    { "data-fridge-id": fridge, class: fridge === ALL ? "all-fridges" : "" },
    el("th", { scope: "row" }, name),
    el("td", { class: "num" }, units),
    el("td", {}, el("span", { class: "badge stage" + (at ? "" : " stage-none"), "data-stage": at ? STAGES[at - 1].stage : "none" }, at ? STAGES[at - 1].label : "not started")),
    el("td", { class: "answer muted" }, ""),
    el("td", {}, el("div", { class: "stage-buttons" },
      ...STAGES.map((s, i) =>
        el("button", {
          type: "button", "data-stage": s.stage, disabled: i + 1 <= at,
          "aria-label": `${s.label}: orders for ${where} on ${day}`,
          onclick: (e) => move(fridge, s.stage, e.currentTarget.closest("tr")),
        }, s.label)))),
  );
}

async function move(fridge, stage, row) {
  const body = { stage, date: day };
  if (fridge !== ALL) body.fridge_id = fridge;
  const label = STAGES.find((s) => s.stage === stage).label;
  let answer;
  try {
    answer = await api("POST", `/v1/kitchens/${encodeURIComponent(kitchenId)}/events`, body);
  } catch (e) {
    announce(e.message, "error");
    return;
  }
  const index = STAGES.findIndex((s) => s.stage === stage) + 1;
  sessionStorage.setItem(stageKey(fridge), String(Math.max(index, reached(fridge))));
  const moved = answer.orders || [];
  const passed = answer.passed_by || [];
  const text = `${moved.length} order${moved.length === 1 ? "" : "s"} → ${label}` + (passed.length ? `; ${passed.length} passed by (fridge unavailable)` : "");
  announce(`${fridge === ALL ? "All fridges" : fridge}: ${text}.`, passed.length ? "error" : "info");
  await refreshPrep();
  const again = document.querySelector(`#stages tr[data-fridge-id="${CSS.escape(row.dataset.fridgeId)}"]`);
  if (again) {
    again.querySelector(".answer").textContent = text + moved.map((o) => ` ${o.order_id}: ${o.status}`).join(",");
    const next = again.querySelector("button:not([disabled])");
    if (next) next.focus();
  }
}

// ---- pick list (another engineer's route: absent on older nodes) ----

function table(id, caption, heads, rows) {
  return el("table", { id },
    el("caption", { class: "muted" }, caption),
    el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))));
}

async function refreshPicklist() {
  const box = document.getElementById("picklist");
  const asked = day;
  let pick;
  try {
    pick = await api("GET", `/v1/kitchens/${encodeURIComponent(kitchenId)}/picklist?date=${asked}`);
    if (asked !== day) return;
  } catch (e) {
    if (asked !== day) return;
    if (e.status === 404) box.replaceChildren(el("p", { class: "muted", id: "picklist-missing" }, "Pick list not available."));
    else announce(e.message, "error");
    return;
  }
  box.replaceChildren(
    table("pick-cook", "Cook", ["Meal", "Units", "Plans", "Orders ahead", "Forecast", "Restock"],
      pick.cook.map((c) => [c.meal_id, c.units, c.for_plans, c.for_orders_ahead, c.for_forecast, c.for_restock])),
    table("pick-deliver", "Deliver", ["Fridge", "Meal", "Units", "Plans", "Orders ahead", "Restock", "Par", "Available", "Arriving"],
      pick.deliver.map((d) => [d.fridge_id, d.meal_id, d.units, d.for_plans, d.for_orders_ahead, d.for_restock, d.par, d.available, d.arriving])),
  );
}

async function start() {
  if (!token()) {
    announce("Open this page with a kitchen token: /kitchen#token=…", "error");
    return;
  }
  kitchenId = (claims() || {}).kitchen_id;
  if (!kitchenId) {
    announce("This token names no kitchen (kitchen_id): ask for a kitchen token.", "error");
    return;
  }
  document.getElementById("kitchen-name").textContent = kitchenId;
  // The pick list answers for the district's today when given no date.
  const today = await districtToday(`/v1/kitchens/${encodeURIComponent(kitchenId)}/picklist`, "date");
  day = today;
  dayButtons(today);
  document.getElementById("day-input").addEventListener("change", (e) => {
    if (e.target.value) choose(e.target.value);
  });
  await choose(today);
  // Read by the browser tests: the page must be drawn within a second.
  performance.mark("larder-first-render");
}

start();
