-- KEYS: 1 session hash, 2 events stream, 3 dedup zset, 4 sessions zset, 5 memory hash.
-- ARGV: 1 id, 2 kind, 3 ts, 4 data JSON, 5 dedup key or '', 6 maxlen, 7 meta JSON,
--       8 memory field or '', 9 memory value, then (counter, amount) pairs.
-- Returns {added, created, stream id}: added is 0 when the dedup key was seen.
local maxlen = tonumber(ARGV[6])
if ARGV[5] ~= '' then
  if redis.call('ZSCORE', KEYS[3], ARGV[5]) then return {0, 0, ''} end
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
  local n = redis.call('ZCARD', KEYS[3])
  if n > maxlen then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - maxlen - 1) end
end
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'created_ts', ARGV[3], 'first_ts', ARGV[3])
  created = 1
end
if ARGV[7] ~= '{}' then
  for k, v in pairs(cjson.decode(ARGV[7])) do
    redis.call('HSETNX', KEYS[1], 'meta.' .. k, tostring(v))
  end
end
local sid = redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*',
                       'kind', ARGV[2], 'ts', ARGV[3], 'data', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'count.events', 1)
redis.call('HINCRBY', KEYS[1], 'count.' .. ARGV[2], 1)
local i = 10
while i < #ARGV do
  if string.find(ARGV[i + 1], '[.eE]') then
    redis.call('HINCRBYFLOAT', KEYS[1], 'count.' .. ARGV[i], ARGV[i + 1])
  else
    redis.call('HINCRBY', KEYS[1], 'count.' .. ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
redis.call('HSET', KEYS[1], 'last_ts', ARGV[3])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[5], ARGV[8], ARGV[9]) end
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
return {1, created, sid}
