-- wrk script for the order benchmark (larder-load --wrk): one-unit POS
-- orders spread over every fridge and meal, as larder-load's own clients
-- place them, from a C client that costs the node's cores little.
-- Env: LARDER_TOKEN (a pos token), LARDER_FRIDGES and LARDER_MEALS
-- (comma-separated ids).
-- Prints `created=N other=N` and latency percentiles (ms) at the end.

local function split(s)
  local out = {}
  for id in string.gmatch(s or "", "[^,]+") do table.insert(out, id) end
  return out
end

local threads = {}

function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

function init(args)
  fridges = split(os.getenv("LARDER_FRIDGES"))
  meals = split(os.getenv("LARDER_MEALS"))
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. (os.getenv("LARDER_TOKEN") or ""),
  }
  counter = offset * 7919
  created = 0
  other = 0
end

function request()
  counter = counter + 1
  local f = fridges[(counter % #fridges) + 1]
  local m = meals[(math.floor(counter / #fridges) % #meals) + 1]
  local body = '{"fridge_id":"' .. f .. '","items":[{"meal_id":"' .. m ..
    '","qty":1}],"payment_method":"tok_visa"}'
  return wrk.format("POST", "/v1/orders", headers, body)
end

function response(status, hdrs, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local c, o = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("other")
  end
  io.write(string.format("created=%d other=%d\n", c, o))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("latency_p%s_ms=%.2f\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("latency_max_ms=%.2f\n", latency.max / 1000))
end
