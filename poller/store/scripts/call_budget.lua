-- One AWS call family's token bucket for one target (profile and region), shared by the fleet.
-- KEYS[1]: the bucket (hash: tokens, at, factor); KEYS[2]: the fleet's budget counters.
-- ARGV: mode, rate (calls/s: AWS's quota), burst (tokens), family. The time is Redis's own.
-- The bucket fills at HEADROOM of the rate, so that calls bunched on their way to AWS still
-- find tokens in AWS's own bucket. Modes:
--   take: a token now (returns "0"), or the seconds until one comes (nothing taken);
--   reserve: a turn, now ("0") or later (the seconds until it): the token is taken from the
--            future (the bucket goes into debt), so turns come one token apart, first come first
--            served, and the caller must not take another when its turn comes;
--   rebook: a reserved turn missed (its caller came late): the caller is given a turn as with
--           reserve, after the turns already given. While turns are queued (debt), its unused
--           token goes back first, so none is spent twice; without a queue it takes a token that
--           is there now, so late callers never reach AWS together;
--   force: a call that never waits (stopping a job) takes its token, into debt if need be;
--   throttled: AWS still answered 429 (another tool on the account): the rate is halved (once a
--              second at most: the calls already on their way answer 429 together), and it grows
--              back by RECOVERY of the full rate a second (AIMD).
local RECOVERY, FLOOR, HEADROOM = 0.02, 0.05, 0.9
local mode, rate, burst = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- Redis's own clock: callers' clocks are read before their scripts queue up, so concurrent
-- callers would move `at` back and forth and count the same refill twice
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local family = ARGV[4]
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'factor', 'cut_at')
local at = math.min(tonumber(held[2]) or now, now)
local elapsed = math.max(0, now - at)
local factor = math.min(1, (tonumber(held[3]) or 1) + elapsed * RECOVERY)
local effective = rate * factor * HEADROOM
local tokens = math.min(burst * factor, (tonumber(held[1]) or burst) + elapsed * effective)
local wait = 0
if mode == 'rebook' then
  if tokens < 0 then
    tokens = tokens + 1
  end
  mode = 'reserve'
end
if mode == 'throttled' then
  if now - (tonumber(held[4]) or 0) >= 1 then
    factor = math.max(FLOOR, factor / 2)
    tokens = math.min(tokens, 0)
    redis.call('HSET', KEYS[1], 'cut_at', tostring(now))
  end
  redis.call('HINCRBY', KEYS[2], family .. '|throttled', 1)
elseif tokens >= 1 or mode == 'force' then
  tokens = tokens - 1
  redis.call('HINCRBY', KEYS[2], family .. '|taken', 1)
else
  if mode == 'reserve' then
    tokens = tokens - 1
    wait = -tokens / effective
  else
    wait = (1 - tokens) / effective
  end
  redis.call('HINCRBY', KEYS[2], family .. '|waited', 1)
  redis.call('HSET', KEYS[2], family .. '|wait', tostring(wait), family .. '|wait_at', tostring(now))
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now), 'factor', tostring(factor))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
