-- Per-second buckets in a hash: fields "<second>:r", "<second>:i", "<second>:o", summed over
-- the window on every call, expired fields deleted.
-- KEYS[1] key; ARGV: rpm itpm otpm input_tokens output_tokens window_ms (0 = unlimited)
-- Returns {allowed, requests_in_window, input_in_window, output_in_window}.
local key = KEYS[1]
local rpm, itpm, otpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local input, output, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local second = tonumber(t[1])
local oldest = second - math.floor(window / 1000)
local used = {r = 0, i = 0, o = 0}
local expired = {}
local fields = redis.call('HGETALL', key)
for n = 1, #fields, 2 do
  local s, kind = string.match(fields[n], '^(%d+):(%a)$')
  if tonumber(s) <= oldest then
    table.insert(expired, fields[n])
  else
    used[kind] = used[kind] + tonumber(fields[n + 1])
  end
end
if #expired > 0 then
  redis.call('HDEL', key, unpack(expired))
end
if (rpm > 0 and used.r + 1 > rpm) or (itpm > 0 and used.i + input > itpm)
    or (otpm > 0 and used.o + output > otpm) then
  return {0, used.r, used.i, used.o}
end
redis.call('HINCRBY', key, second .. ':r', 1)
redis.call('HINCRBY', key, second .. ':i', input)
redis.call('HINCRBY', key, second .. ':o', output)
redis.call('PEXPIRE', key, window + 1000)
return {1, used.r + 1, used.i + input, used.o + output}
