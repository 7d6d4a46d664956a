-- KEYS: 1 session hash, 2 sessions zset.  ARGV: 1 id, 2 ts, 3 meta JSON object.
-- Returns 1 when the session was created, 0 when it existed.
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'created_ts', ARGV[2], 'first_ts', ARGV[2],
             'last_ts', ARGV[2])
  created = 1
end
for k, v in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSETNX', KEYS[1], 'meta.' .. k, tostring(v))
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return created
