-- Claim a job and up to `wanted` other jobs due for a Batch observation, in one round trip.
--
-- KEYS[1]: the observe index (sorted set: tracking id -> when it next needs an observation).
-- ARGV: claim key prefix, own tracking id, due horizon (epoch s), claim lifetime (ms), how many
-- others to claim, how many due jobs to look at at most, where claimed jobs move in the index.
-- Returns the tracking ids claimed besides the own one, or false if the own one is claimed.
--
-- Claimed jobs (the own one too) move past the horizon of any check made while the claim lasts,
-- so other checks neither walk past them nor describe them again; if the claimer dies they are
-- due again once the claim expired. Claim keys are built here: poller does not run on Redis
-- Cluster.
local prefix, own, horizon = ARGV[1], ARGV[2], ARGV[3]
local claim_ms, wanted, limit, parked = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
if not redis.call('SET', prefix .. own, own, 'NX', 'PX', claim_ms) then
    return false
end
redis.call('ZADD', KEYS[1], 'XX', parked, own)
local claimed, seen, page = {}, 0, 200
while #claimed < wanted and seen < limit do
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'LIMIT', seen, page)
    if #due == 0 then break end
    seen = seen + #due
    for _, id in ipairs(due) do
        if id ~= own and redis.call('SET', prefix .. id, own, 'NX', 'PX', claim_ms) then
            claimed[#claimed + 1] = id
            if #claimed >= wanted then break end
        end
    end
end
for _, id in ipairs(claimed) do
    redis.call('ZADD', KEYS[1], 'XX', parked, id)
end
return claimed
