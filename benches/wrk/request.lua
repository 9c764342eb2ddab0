-- wrk script shared by every route of benches/load.sh, so all runs use the same settings.
-- WRK_METHOD (default GET), WRK_BODY (optional), WRK_AUTH (optional Authorization value).
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

-- One machine-readable line besides wrk's own report.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d socket_errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end
