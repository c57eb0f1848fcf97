-- GET /api/updates, as the dashboard polls it. `cargo xtask bench` adds the
-- `Accept-Encoding: gzip` header with wrk's -H for the compressed variant.
dofile("report.lua")
wrk.method = "GET"
wrk.path = "/api/updates"
