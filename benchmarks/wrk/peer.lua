-- wrk script for the peer: a bodiless POST /pedido (the peer picks the cliente and produto).
-- PEER_PATH may name a produto for the hot scenario: /pedido?produto_id=N.
local path = os.getenv("PEER_PATH") or "/pedido"

request = function()
  return wrk.format("POST", path)
end

-- report.lua, found beside this script whatever the working directory.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "report.lua")
