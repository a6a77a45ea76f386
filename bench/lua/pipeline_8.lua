-- 8 pipelined GETs per write
init = function(args)
   local r = {}
   for i = 1, 8 do
      r[i] = wrk.format(nil, "/")
   end
   req = table.concat(r)
end
request = function()
   return req
end
