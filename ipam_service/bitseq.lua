-- bitseq.lua: the Redis twin of ipam_service/bitseq.py, one atomic step per call.
--
-- KEYS[1]  the bit sequence, a string in bitseq.py's serialized form (version 1)
-- KEYS[2]  optional owners hash (field = decimal ordinal, value = owner); given only when
--          the call records or checks an owner, so both keys are declared (Redis Cluster:
--          give them one hash tag, e.g. "ipam:{pool}:bits" and "ipam:{pool}:owners")
-- ARGV[1]  the operation, then its arguments (bitseq_redis.py is the only caller):
--   alloc  from_hi from_lo to_hi to_lo serial owner   -> {hi, lo} of the ordinal set
--          (from/to "" = whole sequence; serial "" = the stored flag, "0"/"1" override)
--   set    hi lo field owner                           -> 1
--   unset  hi lo field conditional expected_owner      -> 1 if released, 0 if it was free
--          (or, when conditional = "1", owned by someone else: then nothing changes)
--   isset  hi lo                                       -> 0/1
--   info                                               -> {flags, last_hi, last_lo,
--          cursor_hi, cursor_lo, used_hi, used_lo, runs, full}
-- Errors are replies starting with CNM_NOTFOUND, CNM_EXISTS, CNM_EXHAUSTED or CNM_INVALID;
-- on any error nothing has been written.
--
-- Lua numbers are doubles, exact only up to 2^53, but ordinals and block indices go to
-- 2^64 - 1: every such quantity is a (hi, lo) pair of 32-bit words, value = hi*2^32 + lo,
-- as in the serialized form. The algorithm mirrors bitseq.py line for line so both produce
-- byte-identical strings (the integration tests compare them after every step).

local HDR, REC = 26, 12
local FULL, TWO32, TWO27 = 4294967295, 4294967296, 134217728
local HEADER_FMT, REC_FMT = '>BBI4I4I4I4I4I4', '>I4I4I4'

local key, op = KEYS[1], ARGV[1]
-- The value is never read whole: the header, then the few run records the binary search
-- and the update touch, each with GETRANGE (a few microseconds whatever the size).
local head = redis.call('GETRANGE', key, 0, HDR - 1)
if #head < HDR then
  return redis.error_reply('CNM_NOTFOUND bit sequence ' .. key .. ' does not exist')
end
local version, flags, lh, ll, ch, cl, uh, ul = struct.unpack(HEADER_FMT, head)
if version ~= 1 then
  return redis.error_reply('CNM_INVALID bit sequence ' .. key .. ' has version ' .. version)
end
local nruns = (redis.call('STRLEN', key) - HDR) / REC
local cache = {}

local function lt(ah, al, bh, bl)
  return ah < bh or (ah == bh and al < bl)
end

local function inc(h, l)
  if l == FULL then return h + 1, 0 end
  return h, l + 1
end

local function rec(i)  -- start_hi, start_lo, value of run i (0-based)
  local r = cache[i]
  if not r then
    local at = HDR + REC * i
    r = {struct.unpack(REC_FMT, redis.call('GETRANGE', key, at, at + REC - 1))}
    cache[i] = r
  end
  return r[1], r[2], r[3]
end

local function block_of(oh, ol)  -- ordinal -> block hi, block lo, bit (0 = MSB)
  return math.floor(oh / 32), (oh % 32) * TWO27 + math.floor(ol / 32), ol % 32
end

local function ordinal(bh, bl, pos)
  return bh * 32 + math.floor(bl / TWO27), (bl % TWO27) * 32 + pos
end

local lbh, lbl = block_of(lh, ll)
local nbh, nbl = inc(lbh, lbl)  -- number of blocks

local function run_of(bh, bl)  -- last run whose start <= block: binary search
  local lo, hi = 0, nruns - 1
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    local sh, sl = rec(mid)
    if lt(bh, bl, sh, sl) then hi = mid - 1 else lo = mid end
  end
  return lo
end

local function first_zero(v, from)  -- first clear bit of v at or after bit `from`, or 32
  local x = bit.band(bit.bnot(v), bit.rshift(-1, from))
  if x == 0 then return 32 end
  local n = 0
  if bit.band(x, -65536) == 0 then n = n + 16; x = bit.lshift(x, 16) end
  if bit.band(x, -16777216) == 0 then n = n + 8; x = bit.lshift(x, 8) end
  if bit.band(x, -268435456) == 0 then n = n + 4; x = bit.lshift(x, 4) end
  if bit.band(x, -1073741824) == 0 then n = n + 2; x = bit.lshift(x, 2) end
  if bit.band(x, -2147483648) == 0 then n = n + 1 end
  return n
end

-- Lowest clear ordinal in [from, to], or nil (BitSequence._find).
local function find(fh, fl, th, tl)
  local bh, bl, b = block_of(fh, fl)
  local i = run_of(bh, bl)
  while true do
    local _, _, v = rec(i)
    if v ~= FULL then
      local pos = first_zero(v, b)
      if pos == 32 then
        bh, bl = inc(bh, bl)
        local eh, el = nbh, nbl
        if i + 1 < nruns then eh, el = rec(i + 1) end
        if lt(bh, bl, eh, el) then pos = first_zero(v, 0) end
      end
      if pos < 32 then
        local oh, ol = ordinal(bh, bl, pos)
        if lt(th, tl, oh, ol) then return nil end
        return oh, ol
      end
    end
    i = i + 1
    if i >= nruns then return nil end
    bh, bl = rec(i)
    b = 0
    local oh, ol = ordinal(bh, bl, 0)
    if lt(th, tl, oh, ol) then return nil end
  end
end

local function is_set(oh, ol)
  local bh, bl, b = block_of(oh, ol)
  local _, _, v = rec(run_of(bh, bl))
  return bit.band(v, bit.lshift(1, 31 - b)) ~= 0
end

-- Set or clear one bit and store the result (BitSequence._write + to_bytes); false if the
-- bit already had that value, in which case nothing is written.
local function write(oh, ol, on)
  local bh, bl, b = block_of(oh, ol)
  local i = run_of(bh, bl)
  local sh, sl, old = rec(i)
  local mask = bit.lshift(1, 31 - b)
  if (bit.band(old, mask) ~= 0) == on then return false end
  local new
  if on then new = bit.bor(old, mask) else new = bit.band(old, bit.bnot(mask)) end
  if new < 0 then new = new + TWO32 end
  local eh, el, nextv = nbh, nbl, nil
  if i + 1 < nruns then eh, el, nextv = rec(i + 1) end
  local at_start = (bh == sh and bl == sl)
  local parts = {}
  if not at_start then parts[#parts + 1] = struct.pack(REC_FMT, sh, sl, old) end
  local merge_prev = false
  if at_start and i > 0 then
    local _, _, pv = rec(i - 1)
    merge_prev = (pv == new)
  end
  if not merge_prev then parts[#parts + 1] = struct.pack(REC_FMT, bh, bl, new) end
  local replace_end = i + 1
  local b1h, b1l = inc(bh, bl)
  if lt(b1h, b1l, eh, el) then
    parts[#parts + 1] = struct.pack(REC_FMT, b1h, b1l, old)
  elseif nextv == new then
    replace_end = i + 2
  end
  if on then
    uh, ul = inc(uh, ul)
    if uh == TWO32 then uh = 0 end
  elseif ul == 0 then
    uh, ul = (uh + FULL) % TWO32, FULL
  else
    ul = ul - 1
  end
  -- Records [i, replace_end) become `parts`. Same count: overwrite them in place. More:
  -- rewrite from i to the end. Fewer: Redis strings cannot shrink in place, so SET it all.
  -- Either way only the bytes that change are replicated and appended to the AOF.
  local header = struct.pack(HEADER_FMT, version, flags, lh, ll, ch, cl, uh, ul)
  local from = HDR + REC * i
  local body = table.concat(parts)
  if #parts == replace_end - i then
    redis.call('SETRANGE', key, from, body)
    redis.call('SETRANGE', key, 0, header)
  elseif #parts > replace_end - i then
    local tail = redis.call('GETRANGE', key, HDR + REC * replace_end, -1)
    redis.call('SETRANGE', key, from, body .. tail)
    redis.call('SETRANGE', key, 0, header)
  else
    local prefix = ''
    if i > 0 then prefix = redis.call('GETRANGE', key, HDR, from - 1) end
    local tail = redis.call('GETRANGE', key, HDR + REC * replace_end, -1)
    redis.call('SET', key, header .. prefix .. body .. tail)
  end
  return true
end

local function decimal(h, l)  -- exact decimal string of h*2^32 + l
  if h < 2097152 then return string.format('%.0f', h * TWO32 + l) end
  local limbs = {math.floor(h / 65536), h % 65536, math.floor(l / 65536), l % 65536}
  local groups = {}
  while limbs[1] + limbs[2] + limbs[3] + limbs[4] > 0 do
    local rem = 0
    for k = 1, 4 do
      local cur = rem * 65536 + limbs[k]
      limbs[k] = math.floor(cur / 10000000)
      rem = cur % 10000000
    end
    table.insert(groups, 1, rem)
  end
  local out = {string.format('%d', groups[1])}
  for k = 2, #groups do out[k] = string.format('%07d', groups[k]) end
  return table.concat(out)
end

local function check_ordinal(oh, ol)
  if lt(lh, ll, oh, ol) then
    return redis.error_reply('CNM_INVALID ordinal ' .. decimal(oh, ol) .. ' is outside [0, '
      .. decimal(lh, ll) .. '] of ' .. key)
  end
end

if op == 'alloc' then
  local fh, fl, th, tl = 0, 0, lh, ll
  if ARGV[2] ~= '' then fh, fl = tonumber(ARGV[2]), tonumber(ARGV[3]) end
  if ARGV[4] ~= '' then th, tl = tonumber(ARGV[4]), tonumber(ARGV[5]) end
  local err = check_ordinal(th, tl)
  if err then return err end
  if lt(th, tl, fh, fl) then
    return redis.error_reply('CNM_INVALID range [' .. decimal(fh, fl) .. ', ' .. decimal(th, tl)
      .. '] is empty')
  end
  local serial = ARGV[6] == '1' or (ARGV[6] == '' and flags % 2 == 1)
  local oh, ol
  if serial and lt(fh, fl, ch, cl) and not lt(th, tl, ch, cl) then
    oh, ol = find(ch, cl, th, tl)
  end
  if oh == nil then oh, ol = find(fh, fl, th, tl) end
  if oh == nil then
    return redis.error_reply('CNM_EXHAUSTED no free bit in [' .. decimal(fh, fl) .. ', '
      .. decimal(th, tl) .. '] of ' .. key)
  end
  if serial then
    if oh == lh and ol == ll then ch, cl = 0, 0 else ch, cl = inc(oh, ol) end
  end
  -- The owner first: scripts are not rolled back, and only this call can fail (WRONGTYPE).
  if KEYS[2] then redis.call('HSET', KEYS[2], decimal(oh, ol), ARGV[7]) end
  write(oh, ol, true)
  return {oh, ol}
end

local oh, ol = tonumber(ARGV[2]), tonumber(ARGV[3])
if op == 'info' then
  local _, _, v = rec(0)
  local full = 0
  if nruns == 1 and v == FULL then full = 1 end
  return {flags, lh, ll, ch, cl, uh, ul, nruns, full}
end
local err = check_ordinal(oh, ol)
if err then return err end

if op == 'isset' then
  if is_set(oh, ol) then return 1 end
  return 0
elseif op == 'set' then
  if is_set(oh, ol) then
    return redis.error_reply('CNM_EXISTS bit ' .. ARGV[4] .. ' of ' .. key .. ' is already set')
  end
  if KEYS[2] then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5]) end
  write(oh, ol, true)
  return 1
elseif op == 'unset' then
  if ARGV[5] == '1' and redis.call('HGET', KEYS[2], ARGV[4]) ~= ARGV[6] then return 0 end
  if KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[4]) end
  local released = write(oh, ol, false)
  if released then return 1 end
  return 0
end
return redis.error_reply('CNM_INVALID unknown bitseq operation ' .. tostring(op))
