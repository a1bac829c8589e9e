"""The allocator's Lua scripts: each call is one atomic step in Redis.

Keys (see `allocator`): KEYS[1] the allocations hash, KEYS[2] the owners
hash, KEYS[3] the dynamic-range cursors. A field of the allocations hash is
"<proto>/<4|6>/<port>" and its value the holders of that port, as
"<host ip>@<owner>" joined by ",": usually one, several when distinct
specific addresses share a port. Conflict rule (Docker's): same protocol,
family and port, and the same address or either one a wildcard (0.0.0.0, ::).
"""

from __future__ import annotations

_COMMON = r"""
local function fam(ip)
  if string.find(ip, ':', 1, true) then return '6' end
  return '4'
end
local function fld(proto, ip, port)
  return proto .. '/' .. fam(ip) .. '/' .. string.format('%d', port)
end
local function wild(ip) return ip == '0.0.0.0' or ip == '::' end
"""

# ARGV[1] owner, ARGV[2] JSON list of requests:
#   {protocol, container_port, low, high, dynamic, busy: [ports], targets: [{host_ip, container_ip}]}
# Returns JSON {"ok": [bindings]} or {"error": "taken"|"listening"|"full", "index": i, ...}.
# Two phases: every port is chosen against a view of the hash that already
# holds this call's earlier picks (so an endpoint cannot collide with itself),
# and only when all are chosen is anything written: a refusal changes nothing.
ALLOCATE = (
    _COMMON
    + r"""
local owner = ARGV[1]
local reqs = cjson.decode(ARGV[2])
local view, dirty = {}, {}

local function entries(f)
  local list = view[f]
  if list == nil then
    list = {}
    local raw = redis.call('HGET', KEYS[1], f)
    if raw then
      for ip, who in string.gmatch(raw, '([^,@]+)@([^,]+)') do
        if who ~= owner then list[#list + 1] = {ip, who} else dirty[f] = true end
      end
    end
    view[f] = list
  end
  return list
end

-- What the owner held is given up first: a repeated allocation replaces it.
local old = redis.call('HGET', KEYS[2], owner)
if old then
  for _, b in ipairs(cjson.decode(old)) do
    local f = fld(b.protocol, b.host_ip, b.host_port)
    entries(f)
    dirty[f] = true
  end
end

local function holder(f, ip)
  for _, e in ipairs(entries(f)) do
    if e[1] == ip or wild(e[1]) or wild(ip) then return e end
  end
  return nil
end

local out, cursors = {}, {}
for i, r in ipairs(reqs) do
  local busy = {}
  for _, p in ipairs(r.busy) do busy[p] = true end
  local n = r.high - r.low + 1
  local first = r.low
  if r.dynamic then
    local last = tonumber(cursors[r.protocol] or redis.call('HGET', KEYS[3], r.protocol))
    if last and last >= r.low and last < r.high then first = last + 1 end
  end
  local chosen, clash = nil, nil
  for k = 0, n - 1 do
    local port = r.low + (first - r.low + k) % n
    local free = true
    for _, t in ipairs(r.targets) do
      local e = holder(fld(r.protocol, t.host_ip, port), t.host_ip)
      if e then
        free = false
        if clash == nil then
          clash = {error = 'taken', ip = t.host_ip, port = port, holder_ip = e[1], owner = e[2]}
        end
        break
      end
    end
    if free and busy[port] then
      free = false
      if clash == nil then clash = {error = 'listening', port = port} end
    end
    if free then
      chosen = port
      break
    end
  end
  if chosen == nil then
    if n > 1 or clash == nil then clash = {error = 'full'} end
    clash.index = i - 1
    return cjson.encode(clash)
  end
  for _, t in ipairs(r.targets) do
    local f = fld(r.protocol, t.host_ip, chosen)
    local list = entries(f)
    list[#list + 1] = {t.host_ip, owner}
    dirty[f] = true
    out[#out + 1] = {protocol = r.protocol, host_ip = t.host_ip, host_port = chosen,
                     container_ip = t.container_ip, container_port = r.container_port}
  end
  if r.dynamic then cursors[r.protocol] = chosen end
end

for f, _ in pairs(dirty) do
  local list = view[f]
  if #list == 0 then
    redis.call('HDEL', KEYS[1], f)
  else
    local parts = {}
    for _, e in ipairs(list) do parts[#parts + 1] = e[1] .. '@' .. e[2] end
    redis.call('HSET', KEYS[1], f, table.concat(parts, ','))
  end
end
if #out == 0 then
  redis.call('HDEL', KEYS[2], owner)
else
  redis.call('HSET', KEYS[2], owner, cjson.encode(out))
end
for proto, port in pairs(cursors) do redis.call('HSET', KEYS[3], proto, port) end
return cjson.encode({ok = out})
"""
)

# ARGV[1] owner. Frees every port the owner holds; returns what it held (JSON list).
RELEASE = (
    _COMMON
    + r"""
local owner = ARGV[1]
local old = redis.call('HGET', KEYS[2], owner)
if not old then return '[]' end
for _, b in ipairs(cjson.decode(old)) do
  local f = fld(b.protocol, b.host_ip, b.host_port)
  local raw = redis.call('HGET', KEYS[1], f)
  if raw then
    local parts = {}
    for ip, who in string.gmatch(raw, '([^,@]+)@([^,]+)') do
      if who ~= owner then parts[#parts + 1] = ip .. '@' .. who end
    end
    if #parts == 0 then
      redis.call('HDEL', KEYS[1], f)
    else
      redis.call('HSET', KEYS[1], f, table.concat(parts, ','))
    end
  end
end
redis.call('HDEL', KEYS[2], owner)
return old
"""
)
