-- wrk script: POST /pedido with one random line per order over the seeded id ranges.
-- CLIENTE_MIN/CLIENTE_COUNT/PRODUTO_MIN/PRODUTO_COUNT come from the environment, and
-- CLIENTE_STEP/PRODUTO_STEP (default 1) where ids step by more, as on a Galera cluster.
local cliente_min = tonumber(os.getenv("CLIENTE_MIN"))
local cliente_count = tonumber(os.getenv("CLIENTE_COUNT"))
local cliente_step = tonumber(os.getenv("CLIENTE_STEP") or "1")
local produto_min = tonumber(os.getenv("PRODUTO_MIN"))
local produto_count = tonumber(os.getenv("PRODUTO_COUNT"))
local produto_step = tonumber(os.getenv("PRODUTO_STEP") or "1")
local headers = { ["Content-Type"] = "application/json" }
-- Production answers only to tokens: PEDIDOS_TOKEN, when set, is sent as a bearer token.
local token = os.getenv("PEDIDOS_TOKEN")
if token then headers["Authorization"] = "Bearer " .. token end

request = function()
  local body = string.format(
    '{"cliente_id": %d, "itens": [{"produto_id": %d, "quantidade": 1}]}',
    cliente_min + cliente_step * math.random(0, cliente_count - 1),
    produto_min + produto_step * math.random(0, produto_count - 1))
  return wrk.format("POST", "/pedido", headers, body)
end

-- report.lua, found beside this script whatever the working directory.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "report.lua")
