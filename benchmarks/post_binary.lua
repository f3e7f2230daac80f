-- wrk script: POST the V2 binary-tensor body in the file named by env BODY (its JSON header is
-- HEADER_LENGTH bytes long) and print one RESULT line, the shared peer harness's format.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = os.getenv("HEADER_LENGTH")
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_s": %.4f, "bytes": %d, "p50_ms": %.3f, "p90_ms": %.3f, ' ..
    '"p99_ms": %.3f, "mean_ms": %.3f, "max_ms": %.3f, "err_connect": %d, "err_read": %d, ' ..
    '"err_write": %d, "err_timeout": %d, "non2xx": %d}\n',
    summary.requests, summary.duration / 1e6, summary.bytes,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, e.status))
end
