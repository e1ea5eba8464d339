-- wrk script for the peer: a bodiless POST /pedido (the peer picks the cliente and produto).
-- PEER_PATH may name a produto for the hot scenario: /pedido?produto_id=N.
local path = os.getenv("PEER_PATH") or "/pedido"

request = function()
  return wrk.format("POST", path)
end

done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors: connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  io.write(string.format("latency p50 %.1f ms, p99 %.1f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
