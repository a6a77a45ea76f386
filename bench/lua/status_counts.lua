-- Counts responses by status code. done() prints one "status CODE COUNT" line per
-- code, and "summary DURATION_US REQUESTS" (what wrk's latency correction used).
--
-- wrk corrects its latency histogram for coordinated omission before reporting
-- it (one long response also stands for the requests the connection did not
-- send meanwhile). When the environment names a file in WRK_HISTOGRAM, done()
-- also writes the corrected histogram there, one "MICROSECONDS COUNT" line per
-- non-empty bucket, so that the caller can undo the correction and see the
-- latencies of the requests actually made. This reads wrk's histogram struct
-- through the LuaJIT FFI (wrk 4.x layout) and is skipped if that fails.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

local function dump_histogram(latency, path)
   local ffi = require("ffi")
   ffi.cdef[[
      typedef struct { uint64_t count, limit, min, max; uint64_t data[?]; } wrk_stats;
   ]]
   local s = ffi.cast("wrk_stats **", latency)[0]
   local f = assert(io.open(path, "w"))
   local lo, hi = tonumber(s.min), tonumber(s.max)
   if hi >= lo and hi < tonumber(s.limit) then
      for v = lo, hi do
         local n = s.data[v]
         if n ~= 0 then
            f:write(string.format("%d %d\n", v, tonumber(n)))
         end
      end
   end
   f:close()
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      for code, n in pairs(t:get("statuses")) do
         total[code] = (total[code] or 0) + n
      end
   end
   for code, n in pairs(total) do
      io.write(string.format("status %d %d\n", code, n))
   end
   io.write(string.format("summary %d %d\n", summary.duration, summary.requests))
   local path = os.getenv("WRK_HISTOGRAM")
   if path and path ~= "" then
      local ok, err = pcall(dump_histogram, latency, path)
      if not ok then
         io.write("histogram unavailable: " .. tostring(err) .. "\n")
      end
   end
end
