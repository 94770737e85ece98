-- One AWS call family's token bucket for one target (account, region), shared by the fleet.
-- KEYS[1]: the bucket (hash: tokens, at, factor, queued); KEYS[2]: the fleet's budget counters.
-- ARGV: mode ("take" or "throttled"), rate (calls/s), burst (tokens), now (epoch s), family.
-- take: one token now (returns "0"), or the seconds until the caller's turn, nothing taken;
-- the callers told to wait are spread one per token to come (`queued`), not all at once.
-- force: a call that never waits (stopping a job) takes its token, into debt if need be.
-- throttled: AWS still answered 429 (another tool on the account): the rate is halved, and it
-- grows back by RECOVERY of the full rate a second (additive increase, multiplicative decrease).
local RECOVERY, FLOOR = 0.02, 0.05
local mode, rate, burst, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local family = ARGV[5]
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'factor', 'queued')
local at = tonumber(held[2]) or now
local elapsed = math.max(0, now - at)
local factor = math.min(1, (tonumber(held[3]) or 1) + elapsed * RECOVERY)
local tokens = tonumber(held[1]) or burst
local queued = tonumber(held[4]) or 0
local wait = 0
if mode == 'throttled' then
  factor = math.max(FLOOR, factor / 2)
  tokens = math.min(tokens, 0)
  redis.call('HINCRBY', KEYS[2], family .. '|throttled', 1)
else
  local effective = rate * factor
  tokens = math.min(burst * factor, tokens + elapsed * effective)
  queued = math.max(0, queued - elapsed * effective)
  if tokens >= 1 or mode == 'force' then
    tokens = tokens - 1
    redis.call('HINCRBY', KEYS[2], family .. '|taken', 1)
  else
    queued = queued + 1
    wait = (queued - tokens) / effective
    redis.call('HINCRBY', KEYS[2], family .. '|waited', 1)
    redis.call('HSET', KEYS[2], family .. '|wait', tostring(wait), family .. '|wait_at', tostring(now))
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now),
  'factor', tostring(factor), 'queued', tostring(queued))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
