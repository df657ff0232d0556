-- wrk script for the leak check (bench/measure/leak.js): each wrk thread stops after N responses.
-- Usage: wrk -t1 -c50 -d<upper bound> -s bench/scripts/stop-after.lua http://127.0.0.1:<port>/ -- <N per thread>
-- wrk's main thread sleeps for the whole -d even when every thread has stopped, so each thread
-- writes "stop-after: done" to stderr when it stops; bench/lib/wrk.js sends wrk SIGINT once all of
-- them have, which makes wrk print its summary right away. -d stays as an upper bound.
local limit = 0
local count = 0

function init(args)
  limit = tonumber(args[1]) or 0
end

function response(status, headers, body)
  count = count + 1
  if limit > 0 and count == limit then
    io.stderr:write("stop-after: done\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end
