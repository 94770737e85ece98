-- Take sent events out of a job's outbox; drop the job from the outbox index once it is empty.
--
-- KEYS[1]: the job's outbox (list of JSON events), KEYS[2]: the outbox index (sorted set).
-- ARGV[1]: the tracking id, ARGV[2..]: the events sent, as stored.
for i = 2, #ARGV do
    redis.call('LREM', KEYS[1], 1, ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0
