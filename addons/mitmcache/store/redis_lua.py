"""The Redis store's scripts: each change to one URL's variants is one atomic script run.

Layout (``P`` is the key prefix, ``T`` a URL's hash tag, ``V`` a variant's id; see ``store/redis.py``):

* ``P{T}:v`` -- a hash per URL: ``url``, ``w`` (when it was last written), and per variant ``e:V`` (the entry, msgpack) and ``m:V``
  (its metadata, a msgpack array ``[version, stored_at, last_access, hits, failures, retry_at,
  keep_until]``); it expires with its longest-lived variant.
* ``P{T}:lock`` -- the URL's coalescing lock (``shared_coalesce.py``), in the same Cluster slot.
* ``Purls`` -- every stored URL in a sorted set of equal scores, so a prefix is a lexical range
  (``ZRANGEBYLEX``), never a scan; ``Pdue`` -- each variant's next check time, member ``T:V:url``.
* Tags (surrogate keys): a variant's tags are its hash's field ``t:V`` (a msgpack array); each tag
  has a sorted set ``P{G}:tag`` (``G``: 16 hex digits of the tag's SHA-1, so Lua computes the same
  name) of the variants carrying it (member ``T:V:url``, score the variant's lifetime in ms), and
  ``Ptags`` holds every tag (score: the longest lifetime of its variants). Every script that writes
  or removes a variant updates them in the same run -- never a read-modify-write across processes --
  and members whose lifetime ended are pruned by score on each write to their tag, so a tag set
  holds no more than the variants alive with that tag, and lives no longer than the longest of them.

Every key gets a lifetime (``keep``): the hashes their variants', the two indexes the longest of
what they index, so nothing outlives the entries written last. Scripts that see a value they cannot
read treat it as absent; a key of another type at a hash's name is replaced on the next write.
"""

_HELPERS = """
local function keep(k, at)
  local current = redis.call('PEXPIRETIME', k)
  if current < at then redis.call('PEXPIREAT', k, at) end
end
local function is_hash(k)
  return redis.call('TYPE', k)['ok'] == 'hash'
end
local function tag_key(prefix, t)
  return prefix .. '{' .. string.sub(redis.sha1hex(t), 1, 16) .. '}:tag'
end
-- Remove a variant (hash h, member T:V:url) from the sets of the tags it carries, and its tags field.
local function untag(prefix, tags_index, h, vid, member)
  local raw = redis.call('HGET', h, 't:' .. vid)
  if not raw then return end
  redis.call('HDEL', h, 't:' .. vid)
  local ok, tags = pcall(cmsgpack.unpack, raw)
  if not ok or type(tags) ~= 'table' then return end
  for _, t in ipairs(tags) do
    local k = tag_key(prefix, t)
    redis.call('ZREM', k, member)
    if redis.call('EXISTS', k) == 0 then redis.call('ZREM', tags_index, t) end
  end
end
local function meta_of(h, vid, version)
  local raw = redis.call('HGET', h, 'm:' .. vid)
  if not raw then return nil end
  local ok, m = pcall(cmsgpack.unpack, raw)
  if not ok or type(m) ~= 'table' or m[1] ~= version then return nil end
  return m
end
"""

# KEYS: hash, urls, due, tags. ARGV: url, tag, vid, entry, meta, keep_ms, check_at, max_variants,
# channel, message, written_ms (when it was written: a claim made after a lookup that saw nothing
# re-reads), the variant's tags (a msgpack array, '' for none), key prefix.
PUT = (
    _HELPERS
    + """
local h, url, tag, vid = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', h) == 1 and not is_hash(h) then redis.call('DEL', h) end
local owner = redis.call('HGET', h, 'url')
if owner and owner ~= url then
  -- another URL with the same tag (a hash collision) gives way
  for _, f in ipairs(redis.call('HKEYS', h)) do
    if string.sub(f, 1, 2) == 'm:' then
      local member = tag .. ':' .. string.sub(f, 3) .. ':' .. owner
      redis.call('ZREM', KEYS[3], member)
      untag(ARGV[13], KEYS[4], h, string.sub(f, 3), member)
    end
  end
  redis.call('ZREM', KEYS[2], owner)
  redis.call('DEL', h)
end
if redis.call('HEXISTS', h, 'm:' .. vid) == 0 then
  local others = {}
  for _, f in ipairs(redis.call('HKEYS', h)) do
    if string.sub(f, 1, 2) == 'm:' then
      local ok, m = pcall(cmsgpack.unpack, redis.call('HGET', h, f))
      table.insert(others, {string.sub(f, 3), (ok and type(m) == 'table' and tonumber(m[2])) or 0})
    end
  end
  local cap = tonumber(ARGV[8])
  if #others >= cap then
    table.sort(others, function(a, b) return a[2] < b[2] end)
    for i = 1, #others - cap + 1 do
      local old = others[i][1]
      redis.call('HDEL', h, 'e:' .. old, 'm:' .. old)
      redis.call('ZREM', KEYS[3], tag .. ':' .. old .. ':' .. url)
      untag(ARGV[13], KEYS[4], h, old, tag .. ':' .. old .. ':' .. url)
    end
  end
end
local member = tag .. ':' .. vid .. ':' .. url
untag(ARGV[13], KEYS[4], h, vid, member)
redis.call('HSET', h, 'url', url, 'e:' .. vid, ARGV[4], 'm:' .. vid, ARGV[5], 'w', ARGV[11])
redis.call('ZADD', KEYS[2], 0, url)
redis.call('ZADD', KEYS[3], ARGV[7], member)
local until_ms = tonumber(ARGV[6])
keep(h, until_ms)
keep(KEYS[2], until_ms)
keep(KEYS[3], until_ms)
if ARGV[12] ~= '' then
  redis.call('HSET', h, 't:' .. vid, ARGV[12])
  for _, t in ipairs(cmsgpack.unpack(ARGV[12])) do
    local k = tag_key(ARGV[13], t)
    redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[11])
    redis.call('ZADD', k, until_ms, member)
    keep(k, until_ms)
    redis.call('ZADD', KEYS[4], 'GT', until_ms, t)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[11])
  keep(KEYS[4], until_ms)
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return 1
"""
)

# KEYS: hash, urls, due, tags. ARGV: url, tag, vid, version, channel, message, key prefix.
DISCARD = (
    _HELPERS
    + """
local h, url, tag, vid = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not is_hash(h) or redis.call('HGET', h, 'url') ~= url then return 0 end
if not meta_of(h, vid, ARGV[4]) then return 0 end
redis.call('HDEL', h, 'e:' .. vid, 'm:' .. vid)
redis.call('ZREM', KEYS[3], tag .. ':' .. vid .. ':' .. url)
untag(ARGV[7], KEYS[4], h, vid, tag .. ':' .. vid .. ':' .. url)
if redis.call('HLEN', h) <= 2 then
  redis.call('DEL', h)
  redis.call('ZREM', KEYS[2], url)
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""
)

# KEYS: urls, due, tags, then one hash per URL. ARGV: channel, message ('' for none), key prefix,
# then (url, tag) per URL.
DELETE = (
    _HELPERS
    + """
local dropped = 0
for i = 4, #KEYS do
  local h = KEYS[i]
  local url, tag = ARGV[2 * i - 4], ARGV[2 * i - 3]
  if is_hash(h) and redis.call('HGET', h, 'url') == url then
    for _, f in ipairs(redis.call('HKEYS', h)) do
      if string.sub(f, 1, 2) == 'm:' then
        local member = tag .. ':' .. string.sub(f, 3) .. ':' .. url
        dropped = dropped + 1
        redis.call('ZREM', KEYS[2], member)
        untag(ARGV[3], KEYS[3], h, string.sub(f, 3), member)
      end
    end
    redis.call('DEL', h)
  end
  redis.call('ZREM', KEYS[1], url)
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return dropped
"""
)

# KEYS: the hashes to drop. Returns how many variants they held.
DROP_HASHES = """
local dropped = 0
for _, h in ipairs(KEYS) do
  if redis.call('TYPE', h)['ok'] == 'hash' then
    for _, f in ipairs(redis.call('HKEYS', h)) do
      if string.sub(f, 1, 2) == 'm:' then dropped = dropped + 1 end
    end
  end
  redis.call('DEL', h)
end
return dropped
"""

# KEYS: urls, due. ARGV: now, limit, lease_until, key prefix. Hands out due variants, each once: its
# check time becomes the lease's end (a process that dies with it leaves it to another then).
# Returns url, entry, meta per variant; drops schedule items of variants that are gone.
DUE = (
    _HELPERS
    + """
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local tag, vid, url = string.sub(member, 1, 16), string.sub(member, 18, 33), string.sub(member, 35)
  local h = ARGV[4] .. '{' .. tag .. '}:v'
  local found = nil
  if is_hash(h) and redis.call('HGET', h, 'url') == url then
    found = redis.call('HMGET', h, 'e:' .. vid, 'm:' .. vid)
  else
    redis.call('ZREM', KEYS[1], url)
  end
  if found and found[1] and found[2] then
    redis.call('ZADD', KEYS[2], ARGV[3], member)
    table.insert(out, url)
    table.insert(out, found[1])
    table.insert(out, found[2])
  else
    redis.call('ZREM', KEYS[2], member)
  end
end
return out
"""
)

# Purge by tag, a batch at a time. KEYS: urls, due, tags, the tag's set. ARGV: key prefix, tag, batch,
# now_ms. Drops the variants of the first ``batch`` members; returns {variants dropped (within
# their lifetime), members looked at}.
DELETE_TAG = (
    _HELPERS
    + """
local members = redis.call('ZRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)
local dropped = 0
for _, member in ipairs(members) do
  local tag, vid, url = string.sub(member, 1, 16), string.sub(member, 18, 33), string.sub(member, 35)
  local h = ARGV[1] .. '{' .. tag .. '}:v'
  if is_hash(h) and redis.call('HGET', h, 'url') == url then
    local raw = redis.call('HGET', h, 'm:' .. vid)
    if raw then
      local ok, m = pcall(cmsgpack.unpack, raw)
      if ok and type(m) == 'table' and tonumber(m[7]) * 1000 > tonumber(ARGV[4]) then dropped = dropped + 1 end
      untag(ARGV[1], KEYS[3], h, vid, member)
      redis.call('HDEL', h, 'e:' .. vid, 'm:' .. vid)
      redis.call('ZREM', KEYS[2], member)
      if redis.call('HLEN', h) <= 2 then
        redis.call('DEL', h)
        redis.call('ZREM', KEYS[1], url)
      end
    end
  end
  redis.call('ZREM', KEYS[4], member)
end
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('ZREM', KEYS[3], ARGV[2]) end
return {dropped, #members}
"""
)

# Soft purge by tag, a batch at a time. KEYS: due, the tag's set. ARGV: key prefix, at, start, stop,
# now_ms. Marks the variants of members start..stop stale as of ``at`` (metadata's 8th item) and due
# at ``at``; returns {variants marked, members looked at}.
STALE_TAG = (
    _HELPERS
    + """
local members = redis.call('ZRANGE', KEYS[2], ARGV[3], ARGV[4])
local marked, at = 0, tonumber(ARGV[2])
for _, member in ipairs(members) do
  local tag, vid, url = string.sub(member, 1, 16), string.sub(member, 18, 33), string.sub(member, 35)
  local h = ARGV[1] .. '{' .. tag .. '}:v'
  if is_hash(h) and redis.call('HGET', h, 'url') == url then
    local raw = redis.call('HGET', h, 'm:' .. vid)
    local ok, m = pcall(cmsgpack.unpack, raw or '')
    if raw and ok and type(m) == 'table' and tonumber(m[7]) * 1000 > tonumber(ARGV[5]) then
      local was = tonumber(m[8] or 0) or 0
      if was == 0 or was > at then m[8] = at end
      redis.call('HSET', h, 'm:' .. vid, cmsgpack.pack(m))
      redis.call('ZADD', KEYS[1], at, member)
      marked = marked + 1
    end
  end
end
return {marked, #members}
"""
)

# KEYS: hash, due. ARGV: url, tag, vid, version, check_at.
RESCHEDULE = (
    _HELPERS
    + """
local h, url = KEYS[1], ARGV[1]
if not is_hash(h) or redis.call('HGET', h, 'url') ~= url then return 0 end
if not meta_of(h, ARGV[3], ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2] .. ':' .. ARGV[3] .. ':' .. url)
return 1
"""
)

# KEYS: urls, due, tags, then one hash per use. ARGV: key prefix, then (url, vid, version, at, hits,
# keep_until, tag) per use. A variant kept longer stays longer in the sets of its tags.
USES = (
    _HELPERS
    + """
for i = 4, #KEYS do
  local h, a = KEYS[i], (i - 4) * 7 + 1
  if is_hash(h) and redis.call('HGET', h, 'url') == ARGV[a + 1] then
    local m = meta_of(h, ARGV[a + 2], ARGV[a + 3])
    if m then
      m[3] = math.max(tonumber(m[3]), tonumber(ARGV[a + 4]))
      m[4] = tonumber(m[4]) + tonumber(ARGV[a + 5])
      m[7] = math.max(tonumber(m[7]), tonumber(ARGV[a + 6]))
      redis.call('HSET', h, 'm:' .. ARGV[a + 2], cmsgpack.pack(m))
      local until_ms = math.ceil(m[7] * 1000)
      keep(h, until_ms)
      keep(KEYS[1], until_ms)
      keep(KEYS[2], until_ms)
      local raw = redis.call('HGET', h, 't:' .. ARGV[a + 2])
      local ok, tags = pcall(cmsgpack.unpack, raw or '')
      if raw and ok and type(tags) == 'table' then
        local member = ARGV[a + 7] .. ':' .. ARGV[a + 2] .. ':' .. ARGV[a + 1]
        for _, t in ipairs(tags) do
          local k = tag_key(ARGV[1], t)
          redis.call('ZADD', k, 'XX', 'GT', until_ms, member)
          keep(k, until_ms)
          redis.call('ZADD', KEYS[3], 'GT', until_ms, t)
        end
        keep(KEYS[3], until_ms)
      end
    end
  end
end
return 1
"""
)

# KEYS: hash. ARGV: url, vid, version, retry_at.
REFRESH_FAILURE = (
    _HELPERS
    + """
local h = KEYS[1]
if not is_hash(h) or redis.call('HGET', h, 'url') ~= ARGV[1] then return 0 end
local m = meta_of(h, ARGV[2], ARGV[3])
if not m then return 0 end
m[5] = tonumber(m[5]) + 1
m[6] = tonumber(ARGV[4])
redis.call('HSET', h, 'm:' .. ARGV[2], cmsgpack.pack(m))
return 1
"""
)

# Coalescing (shared_coordination.py). KEYS: lock, hash. ARGV: token, lifetime_ms, since_ms. Returns
# 'lead' when this caller now holds the lock; 'stored' when the URL was written after ``since`` (the
# caller's lookup found nothing just before another process stored it: re-read, don't fetch again);
# else the current leader's token.
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then return held end
if redis.call('TYPE', KEYS[2])['ok'] == 'hash' then
  local written = tonumber(redis.call('HGET', KEYS[2], 'w') or '0') or 0
  if written > tonumber(ARGV[3]) then return 'stored' end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'lead'
"""

# KEYS: lock. ARGV: token, lifetime_ms. 1 while this caller still holds it.
EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock. ARGV: token, channel, message (the outcome, for the processes waiting for it).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
