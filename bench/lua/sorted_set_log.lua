-- The classic sliding-window log that llmrl replaces: one sorted set per key, one member per
-- admitted request scored by its timestamp, the member encoding its token counts.
-- KEYS[1] key; ARGV: rpm itpm otpm input_tokens output_tokens window_ms (0 = unlimited)
-- Returns {allowed, requests_in_window, input_in_window, output_in_window}.
local key = KEYS[1]
local rpm, itpm, otpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local input, output, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local used_in, used_out = 0, 0
if itpm > 0 or otpm > 0 then
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local i, o = string.match(member, ':(%d+):(%d+)$')
    used_in = used_in + tonumber(i)
    used_out = used_out + tonumber(o)
  end
end
if (rpm > 0 and count + 1 > rpm) or (itpm > 0 and used_in + input > itpm)
    or (otpm > 0 and used_out + output > otpm) then
  return {0, count, used_in, used_out}
end
local seq = redis.call('INCR', key .. ':seq')
redis.call('ZADD', key, now, now .. ':' .. seq .. ':' .. input .. ':' .. output)
redis.call('PEXPIRE', key, window)
redis.call('PEXPIRE', key .. ':seq', window)
return {1, count + 1, used_in + input, used_out + output}
