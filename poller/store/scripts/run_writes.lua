-- Run a record change's writes (poller.store.Writes) server-side: one command on the wire.
--
-- ARGV: each write as its number of words, then the words (command name, then arguments).
-- Keys travel in ARGV like any other word: poller does not run on Redis Cluster.
local i = 1
while i <= #ARGV do
    local words = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + words))
    i = i + words + 1
end
return 0
