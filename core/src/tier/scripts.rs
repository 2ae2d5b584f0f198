//! The Lua scripts that keep a session's record in Redis consistent, and their replies.
//!
//! A session is a Redis hash: `d` its value, `v` its version, `i` its idle timeout (ms), `a` its
//! absolute deadline on the Redis server's clock (ms, absent without one), `o` its owner, `k` its
//! id sealed (see `Keys::seal_for_listing`; absent in a store without secrets). Its key
//! expires at the earlier of its absolute deadline and one touch step after its idle deadline
//! (`key_ttl` below says why). Versions come from one counter
//! (`<prefix>version`), so a version is never issued twice, even to a new session under an old id.
//! Each script runs atomically, which is what makes `set_if_version`, revocation and the owner
//! index hold across processes.
//!
//! Keys are passed in `KEYS` where the script knows them in advance; the owner-index key of a
//! session is derived inside the script from the prefix (a standalone server, not a cluster).
//!
//! When Redis has lost its data (a restart without persistence), the processes write back the
//! copies they hold (`RESYNC`'s `keep`, and `move` for a regenerate), each when it reconnects.
//! That is allowed only within the recovery window (`<prefix>recovery`, a hash with a TTL that
//! the process beginning the data's epoch, `<prefix>epoch`, creates first), and every session
//! removed within it leaves a tombstone there (field `s:<hash>`, and `o:<owner>` for a log-out
//! everywhere, holding the hashes of the sessions it spared, separated by spaces), gone with
//! the window: a process that reconnects later must not bring back what was logged out since.
//! A key written back is marked `r` until it is next written, so that a newer copy in another
//! process may replace it; a key written by the replay of a regenerate is marked `m` with the
//! hash of the session it moved from (see `RESYNC`'s `move`).
//!
//! Every change to a session key goes through a script, never a plain command, and that keeps
//! invalidations whole: within one pass of its event loop Redis remembers only the last client
//! that changed a key and spares that client the key's invalidation under NOLOOP. Had this
//! process sent a plain `PEXPIRE` right after another process's write in the same pass, it
//! would never hear of that write. Redis 7.0 counts a script's changes as its script client's,
//! which is never one of ours, so every process hears of every change (its own too: see
//! `ECHO` in `store::record`).

use redis::Script;
use std::sync::LazyLock;

/// Server time in ms; `now()` is called at most once per script.
const PRELUDE: &str = r"
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The touch step of a session with this idle timeout (ms): the largest power of two at most a
-- quarter of it, at most 65536 (`tier::touch_step_ms` says why).
local function step(idle)
  local quarter = math.floor(idle / 4)
  local s = 1
  while s * 2 <= quarter and s < 65536 do s = s * 2 end
  return s
end
-- A session key's TTL for an idle deadline `ttl` ms away: one touch step longer, never past the
-- absolute deadline `arem` ms away (false: none). A read moves its process's deadline at once
-- but the key's TTL only when that deadline crosses a step, so the key must outlive every
-- deadline a read can set in between: a session is never gone from Redis while a read in some
-- process says it lives.
local function key_ttl(ttl, idle, arem)
  local k = ttl + step(idle)
  if arem and arem < k then k = arem end
  if k < 1 then k = 1 end
  return k
end
-- `t`: the server time if the script has read it already; otherwise it is read only for a
-- session with an absolute deadline. The deadline it reports is the earliest the session's can
-- be: reads elsewhere may have slid it up to a step further than the key's TTL says.
local function reply(key, t)
  local f = redis.call('HMGET', key, 'd', 'v', 'i', 'a', 'o')
  if not f[1] then return false end
  local kttl = redis.call('PTTL', key)
  local arem = -1
  if f[4] then arem = tonumber(f[4]) - (t or now()) end
  local ttl = kttl - step(tonumber(f[3]))
  -- A key that ends at the absolute deadline: the session ends there too, or up to a step before.
  if arem >= 0 and arem <= kttl then ttl = arem end
  return {'s', f[1], f[2], ttl, f[3], arem, f[5] or '', kttl}
end
local function owner_key(prefix, owner) return prefix .. 'o:' .. owner end
-- While the recovery window is open, a removal leaves a tombstone (`field`) in it.
local function bury(prefix, field, value)
  local window = prefix .. 'recovery'
  if redis.call('EXISTS', window) == 1 then redis.call('HSET', window, field, value) end
end
-- Whether a copy may be written back now: within the window, and not removed since.
local function restorable(prefix, hash, owner)
  local window = prefix .. 'recovery'
  if redis.call('EXISTS', window) == 0 then return false end
  if redis.call('HEXISTS', window, 's:' .. hash) == 1 then return false end
  if owner ~= '' then
    local kept = redis.call('HGET', window, 'o:' .. owner)
    if kept and not string.find(' ' .. kept .. ' ', ' ' .. hash .. ' ', 1, true) then
      return false
    end
  end
  return true
end
local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// KEYS: session. ARGV: the version the caller holds (0: none), the owner its copy names
/// (empty: none). Reply: nil if gone; `{'same', pttl, idle}` if the caller's copy is current
/// (its version and its owner: a change of owner keeps the version, and so does a touch that
/// changes the idle timeout, which the reply carries); else a session.
pub(crate) static LOAD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local f = redis.call('HMGET', KEYS[1], 'v', 'o', 'i')
if not f[1] then return false end
if ARGV[1] ~= '0' and f[1] == ARGV[1] and (f[2] or '') == ARGV[2] then
  return {'same', redis.call('PTTL', KEYS[1]), f[3] or '0'}
end
return reply(KEYS[1])
",
    )
});

/// KEYS: the sessions whose local copies are in doubt. ARGV: per key, the version and owner
/// (empty: none) the copy holds. Reply: per key, 1 if that copy is current (as LOAD's `same`),
/// else 0. One call confirms a batch, where a LOAD each would cost a command each.
pub(crate) static CONFIRM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {}
for n, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'v', 'o')
  out[n] = (f[1] and f[1] == ARGV[2 * n - 1] and (f[2] or '') == ARGV[2 * n]) and 1 or 0
end
return out
",
    )
});

/// KEYS: session, version counter. ARGV: precondition (`none`, `live`, `version`, `absent`),
/// expected version, value, idle timeout for this session (0: keep the session's, or
/// the default for a new one), default idle timeout, absolute timeout (0: none; given to a
/// session that has no absolute deadline yet), prefix, the id sealed for listing (empty:
/// none; stored again when the first secret changed), an idle timeout set by a touch not sent
/// yet (0: none) and the version it was set over: taken, where the caller gives none, if the
/// session still holds that version (as the TOUCH script would).
/// Reply: `{'conflict', actual}`, `{'missing'}`, or the session as stored, its value left
/// out (empty: the caller has it).
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key = KEYS[1]
local cur = redis.call('HMGET', key, 'v', 'i', 'a', 'o', 'k', 'r')
local exists = cur[1] ~= false
local pre = ARGV[1]
if pre == 'live' and not exists then return {'missing'} end
if pre == 'version' then
  if not exists then return {'missing'} end
  if cur[1] ~= ARGV[2] then return {'conflict', cur[1]} end
end
if pre == 'absent' and exists then return {'conflict', cur[1]} end
local idle = tonumber(ARGV[4])
-- A timeout a touch set and has not sent yet applies as the touch would: over its version.
if idle == 0 and exists and ARGV[9] ~= '0' and cur[1] == ARGV[10] then idle = tonumber(ARGV[9]) end
if idle == 0 then
  if exists then idle = tonumber(cur[2]) else idle = tonumber(ARGV[5]) end
end
local v = redis.call('INCR', KEYS[2])
local ttl = idle
local abs = exists and cur[3] or false
-- A session without one gets this store's (new, or written before the store had one).
local new_abs = not abs and tonumber(ARGV[6]) > 0
-- The clock is read only where an absolute deadline is in play (stores have none by default):
-- TIME is one of the few commands a write runs.
local t = 0
if abs or new_abs then t = now() end
if new_abs then abs = tostring(t + tonumber(ARGV[6])) end
if abs then
  ttl = math.min(ttl, tonumber(abs) - t)
  redis.call('HSET', key, 'd', ARGV[3], 'v', v, 'i', idle, 'a', abs)
else
  redis.call('HSET', key, 'd', ARGV[3], 'v', v, 'i', idle)
end
if ARGV[8] ~= '' and cur[5] ~= ARGV[8] then redis.call('HSET', key, 'k', ARGV[8]) end
if cur[6] then redis.call('HDEL', key, 'r') end
if ttl < 1 then ttl = 1 end
local arem = -1
if abs then arem = tonumber(abs) - t end
local kttl = key_ttl(ttl, idle, abs and arem)
redis.call('PEXPIRE', key, kttl)
if exists and cur[4] then extend(owner_key(ARGV[7], cur[4]), kttl) end
-- The session as stored, from what was just written (the value is the caller's own).
return {'s', '', v, ttl, idle, arem, (exists and cur[4]) or '', kttl}
",
    )
});

/// KEYS: session. ARGV: prefix, session hash. Reply: 1 if a session was removed.
pub(crate) static DESTROY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local o = redis.call('HGET', KEYS[1], 'o')
if o then redis.call('HDEL', owner_key(ARGV[1], o), ARGV[2]) end
-- Even when gone already: it may be a session Redis lost that a process has yet to write back.
bury(ARGV[1], 's:' .. ARGV[2], 1)
return redis.call('DEL', KEYS[1])
",
    )
});

/// KEYS: old session, new session, version counter. ARGV: prefix, old hash, new hash, the new
/// id sealed for the owner index, and sealed for listing (empty: none), an idle timeout set
/// by a touch not sent yet (0: none), the absolute timeout (0: none; given to a session that
/// has no absolute deadline yet), the version that timeout was set over (taken only if the
/// session still holds it, as the TOUCH script would). Reply: nil if the old session is gone, `{'collision'}` if
/// the new key exists, else the new session. Keeps value, idle timeout (or takes the one
/// given), absolute deadline and owner; restarts the idle deadline; a new version.
pub(crate) static REGENERATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local t = now()
local f = redis.call('HMGET', KEYS[1], 'd', 'i', 'a', 'o', 'v')
if not f[1] then
  bury(ARGV[1], 's:' .. ARGV[2], 1)
  return false
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'collision'} end
local v = redis.call('INCR', KEYS[3])
if ARGV[6] ~= '0' and f[5] == ARGV[8] then f[2] = ARGV[6] end
if not f[3] and ARGV[7] ~= '0' then f[3] = tostring(t + tonumber(ARGV[7])) end
local ttl = tonumber(f[2])
local arem = false
redis.call('HSET', KEYS[2], 'd', f[1], 'v', v, 'i', f[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'k', ARGV[5]) end
if f[3] then
  redis.call('HSET', KEYS[2], 'a', f[3])
  arem = tonumber(f[3]) - t
  ttl = math.min(ttl, arem)
end
if ttl < 1 then ttl = 1 end
local kttl = key_ttl(ttl, tonumber(f[2]), arem)
redis.call('PEXPIRE', KEYS[2], kttl)
if f[4] then
  local ok = owner_key(ARGV[1], f[4])
  redis.call('HSET', KEYS[2], 'o', f[4])
  redis.call('HDEL', ok, ARGV[2])
  redis.call('HSET', ok, ARGV[3], ARGV[4])
  extend(ok, kttl)
end
redis.call('DEL', KEYS[1])
bury(ARGV[1], 's:' .. ARGV[2], 1)
-- With the deadline just set, which is exact.
local out = reply(KEYS[2], t)
out[4] = ttl
return out
",
    )
});

/// KEYS: session. ARGV: prefix, session hash, owner (empty: none), the id sealed.
/// Reply: 0 if the session is gone, else 1.
pub(crate) static SET_OWNER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local f = redis.call('HMGET', KEYS[1], 'v', 'o', 'r')
if not f[1] then return 0 end
local old = f[2]
-- Unchanged: write nothing, so no process is told to distrust its copy.
if (old or '') == ARGV[3] then return 1 end
if f[3] then redis.call('HDEL', KEYS[1], 'r') end
if old then redis.call('HDEL', owner_key(ARGV[1], old), ARGV[2]) end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'o')
else
  local ok = owner_key(ARGV[1], ARGV[3])
  redis.call('HSET', KEYS[1], 'o', ARGV[3])
  redis.call('HSET', ok, ARGV[2], ARGV[4])
  extend(ok, redis.call('PTTL', KEYS[1]))
end
return 1
",
    )
});

/// KEYS: owner index. ARGV: prefix. Drops entries whose session is gone (expired, or
/// removed by a process that crashed before cleaning up) or now names another owner (an id
/// of the caller's choosing used again after it expired); replies with `{hash, sealed id}`
/// pairs.
pub(crate) static OWNER_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local all = redis.call('HGETALL', KEYS[1])
local owner = string.sub(KEYS[1], #ARGV[1] + 3)
local out = {}
for n = 1, #all, 2 do
  if redis.call('HGET', ARGV[1] .. 's:' .. all[n], 'o') == owner then
    out[#out + 1] = all[n]
    out[#out + 1] = all[n + 1]
  else
    redis.call('HDEL', KEYS[1], all[n])
  end
end
return out
",
    )
});

/// KEYS: owner index. ARGV: prefix, the hashes to keep, separated by spaces (empty: none).
/// Reply: the hashes of the sessions removed. An entry whose session now names another owner (an id of the caller's
/// choosing used again after it expired) is dropped from the index, and the session left.
pub(crate) static DESTROY_OWNER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local all = redis.call('HKEYS', KEYS[1])
local owner = string.sub(KEYS[1], #ARGV[1] + 3)
local keep = {}
for h in string.gmatch(ARGV[2], '%S+') do keep[h] = true end
local gone = {}
for _, h in ipairs(all) do
  if not keep[h] then
    local key = ARGV[1] .. 's:' .. h
    local holder = redis.call('HGET', key, 'o')
    if holder == owner then
      redis.call('DEL', key)
      gone[#gone + 1] = h
      bury(ARGV[1], 's:' .. h, 1)
    elseif redis.call('EXISTS', key) == 0 then
      -- Gone already, or lost with Redis's data: not to be written back either.
      bury(ARGV[1], 's:' .. h, 1)
    end
    redis.call('HDEL', KEYS[1], h)
  end
end
-- Sessions Redis lost are in no index: the owner's tombstone covers them (but those kept).
bury(ARGV[1], 'o:' .. owner, ARGV[2])
return gone
",
    )
});

/// KEYS: the sessions to touch. ARGV: prefix, the absolute timeout (ms, 0: none; given to a
/// session that has no absolute deadline yet, with a new version), then per key the idle deadline's distance (ms;
/// the key gets one touch step more), a new idle timeout (ms, 0: unchanged) and the version it
/// was set over. A plain touch moves the expiry later
/// only (`GT`: a late touch never shortens what a newer write set); one that sets a new idle
/// timeout stores it and takes its TTL even if shorter, unless a write changed the version
/// since (then it moves the expiry later only, as a plain touch). Never creates a key, so a
/// touch cannot bring back a destroyed session. Reply: the indexes (1-based) of keys that no
/// longer exist.
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local gone = {}
local t
local absolute = tonumber(ARGV[2])
for n, key in ipairs(KEYS) do
  local ms = tonumber(ARGV[3 * n])
  local idle = ARGV[3 * n + 1]
  local f = redis.call('HMGET', key, 'v', 'i', 'a', 'o', 'r')
  if not f[1] then
    gone[#gone + 1] = n
  else
    local arem = false
    if f[3] then
      t = t or now()
      arem = tonumber(f[3]) - t
    elseif absolute > 0 then
      -- A session only ever read here, made before this store had an absolute timeout. A new
      -- version, once: every process's copy then loads the deadline, which a copy of the
      -- same version would not.
      t = t or now()
      local v = redis.call('INCR', ARGV[1] .. 'version')
      redis.call('HSET', key, 'a', tostring(t + absolute), 'v', v)
      if f[5] then redis.call('HDEL', key, 'r') end
      arem = absolute
      -- The key ends with the session: the `GT` below would not shorten it.
      if redis.call('PTTL', key) > arem then redis.call('PEXPIRE', key, arem) end
    end
    if idle ~= '0' and f[1] == ARGV[3 * n + 2] then
      if f[2] ~= idle then redis.call('HSET', key, 'i', idle) end
      if f[5] then redis.call('HDEL', key, 'r') end
      ms = key_ttl(ms, tonumber(idle), arem)
      redis.call('PEXPIRE', key, ms)
    else
      -- A read slides the deadline by the idle timeout at most: a touch from a process that
      -- still had a longer one must not undo a new, shorter timeout.
      local i = tonumber(f[2])
      ms = key_ttl(math.min(ms, i), i, arem)
      redis.call('PEXPIRE', key, ms, 'GT')
    end
    if f[4] then extend(owner_key(ARGV[1], f[4]), ms) end
  end
end
return gone
",
    )
});

/// After a reconnect, one local copy checked against Redis.
/// KEYS: session, version counter. ARGV: 1 mode, 2 local version, 3 base, 4 value, 5 ttl ms,
/// 6 idle ms, 7 absolute remaining ms (-1: none), 8 owner, 9 whether Redis lost its data
/// (1/0), 10 prefix, 11 session hash, 12 sealed id, 13 the id sealed for listing (empty:
/// none), 14 whether the owner was set during the outage (1/0: a replay keeps the owner Redis
/// holds, set elsewhere meanwhile without a new version). Modes:
/// - `check`: a suspect copy; only compared, never written;
/// - `keep`: a copy from before the outage; written back only if Redis lost its data (a key
///   missing from a Redis that did not is a session revoked or expired meanwhile), within the
///   recovery window and not removed since (see the module's comment); it also replaces a
///   key written back with an older version;
/// - `replay`: written here during the outage over version `base` (0: created here); stored
///   under a new version if Redis still holds `base` (or, for a creation, nothing);
/// - `force`: destroyed then written here during the outage; stored whatever Redis holds;
/// - `destroy`: destroyed here during the outage; removed whatever Redis holds.
/// - `move`: the new id of a regenerate made here during the outage. KEYS[3]: the session it
///   moved from; ARGV 15 that session's hash, 16 its owner when it moved (empty: none).
///   KEYS[4..] (ARGV 17..: their hashes): the ids it moved through on its way here, where an
///   earlier try whose reply was lost may have written it before it moved on (then it moves
///   on from there, as it did here). Stored (marked `m` with the first hash, so that a retry
///   whose reply was lost is told so) only if Redis still holds the old session, or lost it
///   with its data and may have it written back; that session is removed in the same step.
///   Otherwise it was
///   revoked meanwhile (a logout, a log-out everywhere): `{'stale'}`. `{'taken'}`: a call
///   since the reconnect wrote the new id itself (nothing is changed). The check and the write
///   are one step so that a log-out everywhere elsewhere finds the session under one id or
///   the other, never between them.
///
/// Reply: `{'same', key TTL}` Redis holds this copy (its version and its owner); `{'stale'}` it
/// does not and the copy must go;
/// `{'restored', version}` Redis now holds the copy at that version (`{'restored', version,
/// 'o'}`: its value, under the owner Redis held); `{'done'}`; for `move` alone, `{'taken'}`
/// and `{'moved', version}` (an earlier try of this move wrote it, at that version).
pub(crate) static RESYNC: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local t = now()
local key = KEYS[1]
local mode = ARGV[1]
local cur = redis.call('HGET', key, 'v')
local old_owner = redis.call('HGET', key, 'o')
if mode == 'destroy' then
  if old_owner then redis.call('HDEL', owner_key(ARGV[10], old_owner), ARGV[11]) end
  redis.call('DEL', key)
  bury(ARGV[10], 's:' .. ARGV[11], 1)
  return {'done'}
end
if mode == 'move' then
  if cur then
    if redis.call('HGET', key, 'm') == ARGV[15] then return {'moved', cur} end
    return {'taken'}
  end
  local from, from_hash = KEYS[3], ARGV[15]
  if redis.call('EXISTS', from) == 0 then
    for n = 4, #KEYS do
      if redis.call('HGET', KEYS[n], 'm') == ARGV[15] then
        from, from_hash = KEYS[n], ARGV[n + 13]
        break
      end
    end
  end
  if redis.call('EXISTS', from) == 0
    and not (ARGV[9] == '1' and restorable(ARGV[10], ARGV[15], ARGV[16])) then
    return {'stale'}
  end
  local from_owner = redis.call('HGET', from, 'o')
  if from_owner then redis.call('HDEL', owner_key(ARGV[10], from_owner), from_hash) end
  redis.call('DEL', from)
  bury(ARGV[10], 's:' .. from_hash, 1)
end
local lost = ARGV[9] == '1' and restorable(ARGV[10], ARGV[11], ARGV[8])
if mode == 'check' or mode == 'keep' then
  if cur then
    if cur == ARGV[2] and (old_owner or '') == ARGV[8] then
      return {'same', redis.call('PTTL', key)}
    end
    local older_restored = mode == 'keep' and lost and redis.call('HEXISTS', key, 'r') == 1
      and tonumber(cur) < tonumber(ARGV[2])
    if not older_restored then return {'stale'} end
  elseif mode == 'check' or not lost then
    return {'stale'}
  end
end
if mode == 'replay' then
  if ARGV[3] == '0' then
    if cur then return {'stale'} end
  elseif cur ~= ARGV[3] and not (cur == false and lost) then
    return {'stale'}
  end
end
local owner = ARGV[8]
if mode == 'replay' and ARGV[14] == '0' and cur then owner = old_owner or '' end
local v = ARGV[2]
if mode ~= 'keep' then
  v = redis.call('INCR', KEYS[2])
elseif tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(v) then
  redis.call('SET', KEYS[2], v)
end
if old_owner and old_owner ~= owner then
  redis.call('HDEL', owner_key(ARGV[10], old_owner), ARGV[11])
end
redis.call('DEL', key)
redis.call('HSET', key, 'd', ARGV[4], 'v', v, 'i', ARGV[6])
if mode == 'keep' then redis.call('HSET', key, 'r', '1') end
if mode == 'move' then redis.call('HSET', key, 'm', ARGV[15]) end
if ARGV[13] ~= '' then redis.call('HSET', key, 'k', ARGV[13]) end
local arem = false
if tonumber(ARGV[7]) >= 0 then
  arem = tonumber(ARGV[7])
  redis.call('HSET', key, 'a', tostring(t + arem))
end
local kttl = key_ttl(math.max(1, tonumber(ARGV[5])), tonumber(ARGV[6]), arem)
redis.call('PEXPIRE', key, kttl)
if owner ~= '' then
  local ok = owner_key(ARGV[10], owner)
  redis.call('HSET', key, 'o', owner)
  redis.call('HSET', ok, ARGV[11], ARGV[12])
  extend(ok, kttl)
end
if owner ~= ARGV[8] then return {'restored', v, 'o'} end
return {'restored', v}
",
    )
});

/// ARGV: cursor, the session-key pattern, batch size, whether to include values (`1`/`0`).
/// One step of a SCAN over the sessions. Reply: `{next cursor, key, sealed id or false, value
/// or false, ...}`.
pub(crate) static SCAN_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {step[1]}
for _, key in ipairs(step[2]) do
  local f
  if ARGV[4] == '1' then
    f = redis.call('HMGET', key, 'k', 'd')
  else
    f = {redis.call('HGET', key, 'k'), false}
  end
  out[#out + 1] = key
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
end
return out
",
    )
});

/// ARGV: cursor, a key pattern, batch size (and an unused flag, as `SCAN_SESSIONS` takes). One
/// step of removing every key that matches (the owner indexes, then the sessions). Reply:
/// `{next cursor}`.
pub(crate) static CLEAR_STEP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
if #step[2] > 0 then redis.call('UNLINK', unpack(step[2])) end
return {step[1]}
",
    )
});
