-- KEYS: 1 current-session string. ARGV: 1 candidate id. Every concurrent caller
-- that finds no current session agrees on the first candidate stored.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
