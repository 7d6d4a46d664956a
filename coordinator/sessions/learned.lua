-- KEYS: 1 learned hash, 2 session hash, 3 sessions zset.
-- ARGV: 1 action key, 2 bytes freed, 3 duration ms, 4 ts, 5 session id.
local n, mb, mm = 0, 0, 0
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local t = cjson.decode(cur)
  n, mb, mm = t.n, t.mean_bytes_freed, t.mean_ms
end
n = n + 1
mb = mb + (tonumber(ARGV[2]) - mb) / n
mm = mm + (tonumber(ARGV[3]) - mm) / n
local row = cjson.encode({n = n, mean_bytes_freed = mb, mean_ms = mm, last_ts = tonumber(ARGV[4])})
redis.call('HSET', KEYS[1], ARGV[1], row)
redis.call('HSETNX', KEYS[2], 'id', ARGV[5])
redis.call('HSETNX', KEYS[2], 'created_ts', ARGV[4])
redis.call('HSETNX', KEYS[2], 'first_ts', ARGV[4])
redis.call('HSET', KEYS[2], 'last_ts', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
return n
