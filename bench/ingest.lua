-- POST /webhook with realistic DIUN payloads, one JSON document per line of the file given
-- after `--` (`cargo xtask bench` writes target/bench/payloads.jsonl: 5,000 distinct images).
-- Every wrk thread walks the whole list from its own starting point, so the first pass inserts
-- and everything after it re-sends images already stored: upserts. No Content-Type header:
-- DIUN sends none unless configured.
dofile("report.lua")

local counter = 0
function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
end

local requests, next_index = {}, 1
function init(args)
  local path = args[1] or error("usage: wrk ... -s ingest.lua <url> -- <payloads.jsonl>")
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", "/webhook", nil, line)
    end
  end
  assert(#requests > 0, "no payloads in " .. path)
  -- Threads start at different places of the list (thread_index comes from setup()).
  next_index = ((thread_index or 0) * 1237) % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
