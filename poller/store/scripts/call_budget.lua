-- One AWS call family's token bucket for one target (profile and region), shared by the fleet.
-- KEYS[1]: the bucket (hash: tokens, at, factor, cut_at, next_turn); KEYS[2]: the fleet's
-- budget counters.
-- ARGV: mode, rate (calls/s: AWS's quota), burst (tokens), family, headroom[, now]. The time is
-- Redis's own; `now` (seconds) comes from a test's clock only (CallBudgets.budget_clock). The
-- bucket fills at `headroom` of the rate (a share below 1), so that calls bunched on their way
-- to AWS still find tokens in AWS's own bucket. Modes:
--   take: a token now (returns "0"), or the seconds until one comes (nothing taken);
--   turn: a place among the callers waiting for tokens, one token apart, first come first
--         served: the seconds until it, and nothing is taken: at its turn the caller takes its
--         token (take), so callers that come late (busy workers) never reach AWS together, and
--         a turn missed is no token lost. "0": the turn is now, and its token is taken;
--   force: a call that never waits (stopping a job) takes its token, into debt if need be;
--   throttled: AWS still answered 429 (another tool on the account): the rate is halved (once a
--              second at most: the calls already on their way answer 429 together), and it grows
--              back by RECOVERY of the full rate a second (AIMD).
local RECOVERY, FLOOR = 0.02, 0.05
local mode, rate, burst = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- Redis's own clock: callers' clocks are read before their scripts queue up, so concurrent
-- callers would move `at` back and forth and count the same refill twice. A test moves its own.
local now = tonumber(ARGV[6])
if now == nil then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local family, headroom = ARGV[4], tonumber(ARGV[5])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'factor', 'cut_at', 'next_turn')
local at = math.min(tonumber(held[2]) or now, now)
local elapsed = math.max(0, now - at)
local factor = math.min(1, (tonumber(held[3]) or 1) + elapsed * RECOVERY)
local effective = rate * factor * headroom
local tokens = math.min(burst * factor, (tonumber(held[1]) or burst) + elapsed * effective)
local wait = 0
local function waits(seconds)
  wait = seconds
  redis.call('HINCRBY', KEYS[2], family .. '|waited', 1)
  redis.call('HSET', KEYS[2], family .. '|wait', tostring(wait), family .. '|wait_at', tostring(now))
end
if mode == 'turn' then
  -- Turns leave the tokens there now alone: AWS's own bucket, as full, takes up the calls that
  -- bunch on their way to it
  local turn = math.max(now + math.max(0, 1 - tokens) / effective, tonumber(held[5]) or 0)
  redis.call('HSET', KEYS[1], 'next_turn', tostring(turn + 1 / effective))
  if turn > now then
    waits(turn - now)
  else -- nobody waiting and a token here: the caller's turn is now, and it takes its token
    tokens = tokens - 1
    redis.call('HINCRBY', KEYS[2], family .. '|taken', 1)
  end
elseif mode == 'throttled' then
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
  waits((1 - tokens) / effective)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now), 'factor', tostring(factor))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
