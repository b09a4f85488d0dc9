-- wrk script: send absolute-form requests (what a client sends to a forward proxy).
local target = os.getenv("TARGET_URL")
request = function()
  return wrk.format("GET", target)
end
