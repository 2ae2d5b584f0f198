'use strict'

// The npm package `coatcheck`: an express-session Store (also usable by @fastify/session)
// over the native session table. Behaviour lives in the Rust core; this file only adapts the
// Store contract: callbacks or Promises, TTLs from the cookie, (de)serialization, and the merge
// of JavaScript objects when two requests of one session save at once.

const { EventEmitter } = require('node:events')
const { createRequire } = require('node:module')
const path = require('node:path')
const { inspect } = require('node:util')
const native = loadNative()

function loadNative() {
  try {
    return require('./native.js')
  } catch (error) {
    const { noAddonMessage } = require('./no-addon.js')
    throw codedError('invalid_config', noAddonMessage(error), error)
  }
}

const ONE_DAY_SECONDS = 86400
// The native getText() answer: the session's expiry as toISOString writes it (24 characters),
// 16 digits of version, then the value.
const EXPIRY_WIDTH = 24
const VALUE_START = EXPIRY_WIDTH + 16
// Saves that keep losing the race to other requests of the same session give up after this
// many merges with a `conflict` error.
const MAX_MERGES = 16
// The key under which a loaded session remembers what it was loaded as (see `Loaded`).
const LOADED = '__coatcheckLoaded'
// What `_parseValue` answers for a stored value the serializer cannot read.
const UNREADABLE = Symbol('unreadable session')

// Callbacks must never run synchronously inside the Store method. process.nextTick is the
// cheapest deferral that keeps call order (measured against queueMicrotask and setImmediate
// in benches/node/bench-store.js).
const defer = process.nextTick

function codedError(code, message, cause) {
  const error = new Error(message, cause === undefined ? undefined : { cause })
  error.code = code
  return error
}

// Native errors already carry the core's code; anything else thrown while adapting a call
// (a serializer failing, a user callback option throwing) becomes `invalid_argument`.
function asStoreError(error) {
  // A panic inside the addon (a bug) arrives as N-API's GenericFailure: `internal`.
  if (error instanceof Error && error.code === 'GenericFailure') return codedError('internal', error.message, error)
  if (error instanceof Error && typeof error.code === 'string' && /^[a-z_]+$/.test(error.code)) return error
  const message = error instanceof Error ? error.message : String(error)
  return codedError('invalid_argument', message, error)
}

// Reports an outcome through `cb` on a later tick, or as a Promise when there is no callback.
// No extra arguments when there is nothing to report keeps nextTick at its cheapest.
function settle(cb, error, result) {
  if (typeof cb === 'function') {
    if (error) defer(cb, error)
    else if (result === undefined) defer(cb)
    else defer(cb, null, result)
    return undefined
  }
  return error ? Promise.reject(error) : Promise.resolve(result)
}

const nothing = () => undefined

// A string option, or undefined when not given.
function stringOption(value, name) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw codedError('invalid_config', `${name} must be a string`)
  return value
}

function checkSid(sid) {
  if (typeof sid !== 'string') throw codedError('invalid_id', `session id must be a string, got ${typeof sid}`)
}

function positiveSeconds(value, name) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw codedError('invalid_config', `${name} must be a positive number of seconds`)
  }
  return value * 1000
}

/**
 * What a request loaded: from which store, the session's id, version and stored text. It
 * rides along as an
 * enumerable property because both frameworks rebuild the session object by copying the
 * enumerable properties of what `get` returned (symbols and hidden properties would be lost);
 * `toJSON` keeps it out of every JSON form (the stored value, express-session's and
 * @fastify/session's change hashes), and its inspected form leaves out the session id (a
 * credential) and the stored text, so `console.log(req.session)` does not write them to logs.
 */
class Loaded {
  constructor(origin, sid, version, text) {
    // The store it was loaded from (`CoatcheckStore.origin`): a session loaded from another
    // store (a script copying sessions across) is stored as given there, not as a save over a
    // version that store never held.
    this.origin = origin
    this.sid = sid
    this.version = version
    this.text = text
  }

  toJSON() {
    return undefined
  }

  [inspect.custom]() {
    return `[coatcheck: loaded version ${this.version}]`
  }
}

// What `sess` was loaded as from the store of `origin`, if it was; `sid`, if given, must match.
function loadedAs(sess, origin, sid) {
  const loaded = sess !== null && typeof sess === 'object' ? sess[LOADED] : undefined
  if (!(loaded instanceof Loaded) || loaded.origin !== origin) return undefined
  return sid === undefined || loaded.sid === sid ? loaded : undefined
}

// Numbers the stores of this thread, for `Loaded.origin`, and the keys of those that share
// their sessions.
let storesMade = 0
const sharedOrigins = new Map()

// Which sessions a store shares, as a number: stores on one Redis and key prefix share theirs
// (versions are Redis's), and so do stores of one name; any other store its own. (A Redis URL
// spelled two ways counts as two Redis; the password in it goes no further than this Map.)
function originOf(options) {
  let key
  if (options.redisUrl) key = JSON.stringify(['redis', options.redisKeyPrefix ?? 'coatcheck:', options.redisUrl])
  else if (options.name !== undefined) key = JSON.stringify(['name', options.name])
  else return ++storesMade
  let origin = sharedOrigins.get(key)
  if (origin === undefined) {
    origin = ++storesMade
    sharedOrigins.set(key, origin)
  }
  return origin
}

/**
 * The merge rule: `current` (what another request stored meanwhile) with this request's own
 * changes on top. A top-level key this request added or changed (compared by its serialized
 * form) takes this request's value; a key it removed is removed; every other key keeps the
 * other request's value.
 */
function mergeChanges(base, mine, current, stringify) {
  const merged = current !== null && typeof current === 'object' ? current : {}
  const before = base !== null && typeof base === 'object' ? base : {}
  for (const key of Object.keys(mine)) {
    if (key === LOADED) continue
    const value = mine[key]
    if (!Object.hasOwn(before, key) || stringify(before[key]) !== stringify(value)) merged[key] = value
  }
  for (const key of Object.keys(before)) {
    if (!Object.hasOwn(mine, key)) delete merged[key]
  }
  return merged
}

// Makes `sess` hold exactly the keys of `merged` (its cookie stays the request's own).
function adopt(sess, merged) {
  for (const key of Object.keys(sess)) {
    if (key !== 'cookie' && key !== LOADED && !Object.hasOwn(merged, key)) delete sess[key]
  }
  for (const key of Object.keys(merged)) if (key !== 'cookie') sess[key] = merged[key]
}

// Where a session text's cookie ends, when the cookie is its first key, as both frameworks
// write it; a cookie's JSON is flat (no nested object).
const COOKIE_START = '{"cookie":'
function cookieEnd(text) {
  if (!text.startsWith(COOKIE_START) || text[COOKIE_START.length] !== '{') return -1
  const end = text.indexOf('}', COOKIE_START.length)
  return end < 0 ? -1 : end + 1
}

/**
 * Whether two JSON session texts differ only in the cookie's expiry, which the frameworks
 * move on every request that refreshes the cookie: then saving is a touch, not a write. Any
 * other change to the cookie (a new `maxAge`, say) is a change.
 */
function onlyExpiryDiffers(a, b) {
  const endA = cookieEnd(a)
  const endB = cookieEnd(b)
  if (endA < 0 || endB < 0 || a.slice(endA) !== b.slice(endB)) return false
  const cookieA = JSON.parse(a.slice(COOKIE_START.length, endA))
  const cookieB = JSON.parse(b.slice(COOKIE_START.length, endB))
  // @fastify/session also writes the expiry a restored cookie had as `originalExpires`.
  for (const cookie of [cookieA, cookieB]) {
    delete cookie.expires
    delete cookie.originalExpires
  }
  return JSON.stringify(cookieA) === JSON.stringify(cookieB)
}

// What a native call gives back: a value from a store of this process, or, from a store on
// Redis, a Promise that settles off the main thread. The Store methods are written once over
// both with `after` and `attempt`: a plain value continues at once, a Promise continues later.
function after(value, next) {
  return value instanceof Promise ? value.then(next) : next(value)
}

function attempt(work, next, recover) {
  let value
  try {
    value = work()
  } catch (error) {
    return recover(error)
  }
  return value instanceof Promise ? value.then(next, recover) : next(value)
}

// A native async call's result: the value, or the core's error as { code, message } (a
// rejected napi task could carry only napi's own status), thrown here as a coded Error.
function unwrap(pending) {
  return pending.then((value) => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && typeof value.code === 'string') {
      throw codedError(value.code, value.message)
    }
    return value
  })
}

// The native calls the Store methods make. In a store of this process they are synchronous
// (in-process, well under a microsecond). On Redis every call that may need the network runs
// on the addon's own waiting threads; a read or touch that a trusted local copy answers stays
// synchronous.
function localCalls(n, store) {
  return {
    getText: (sid) => native.getText(store, sid),
    set: (sid, value, ttlMs) => native.set(store, sid, value, ttlMs),
    setIfVersion: (sid, value, version, ttlMs) => native.setIfVersion(store, sid, value, version, ttlMs),
    touch: (sid, ttlMs, minIdleMs) => native.touch(store, sid, ttlMs, minIdleMs),
    destroy: (sid) => native.destroy(store, sid),
    regenerate: (sid) => n.regenerate(sid),
    setOwner: (sid, owner) => n.setOwner(sid, owner),
    sessionsOf: (owner) => n.sessionsOf(owner),
    destroyOwner: (owner, keep) => n.destroyOwner(owner, keep),
    ids: () => n.ids(),
    all: () => n.all(),
    count: () => n.count(),
    clear: () => n.clear(),
  }
}

function sharedCalls(n, store) {
  return {
    getText: (sid) => native.getTextLocal(store, sid) ?? unwrap(n.getTextAsync(sid)),
    set: (sid, value, ttlMs) => unwrap(n.setAsync(sid, value, ttlMs)),
    setIfVersion: (sid, value, version, ttlMs) => unwrap(n.setIfVersionAsync(sid, value, version, ttlMs)),
    touch: (sid, ttlMs, minIdleMs) => native.touchLocal(store, sid, ttlMs, minIdleMs) ?? unwrap(n.touchAsync(sid, ttlMs, minIdleMs)),
    destroy: (sid) => unwrap(n.destroyAsync(sid)),
    regenerate: (sid) => unwrap(n.regenerateAsync(sid)),
    setOwner: (sid, owner) => unwrap(n.setOwnerAsync(sid, owner)),
    sessionsOf: (owner) => unwrap(n.sessionsOfAsync(owner)),
    destroyOwner: (owner, keep) => unwrap(n.destroyOwnerAsync(owner, keep)),
    ids: () => unwrap(n.idsAsync()),
    all: () => unwrap(n.allAsync()),
    count: () => unwrap(n.countAsync()),
    clear: () => unwrap(n.clearAsync()),
  }
}

// `secret`: one string or an array of them (the first seals), as express-session takes it.
function secretsOption(value) {
  if (value === undefined || value === null) return undefined
  const secrets = Array.isArray(value) ? value : [value]
  if (secrets.length === 0 || !secrets.every((s) => typeof s === 'string' && s !== '')) {
    throw codedError('invalid_config', 'secret must be a non-empty string or an array of them')
  }
  return secrets
}

function positiveInteger(value, name) {
  if (value === undefined || value === null) return undefined
  if (!Number.isSafeInteger(value) || value < 1) throw codedError('invalid_config', `${name} must be a positive integer`)
  return value
}

// The options the constructor reads (index.d.ts documents them).
const OPTIONS = new Set([
  'ttl', 'serializer', 'ownerOf', 'name', 'disableTouch', 'touchAfter', 'regenerateKeepsData',
  'absoluteTimeout', 'maxSessions', 'maxBytes', 'maxSessionBytes', 'shards', 'sweepInterval',
  'redisUrl', 'redisKeyPrefix', 'redisTimeout', 'redisWhenDown', 'redisStrict', 'secret',
  'persistPath', 'persistFsync',
])
// connect-redis's own options, which a user switching from it may still pass: ignored, `client`
// would leave sessions in one process, lost across a cluster's workers and every deploy.
const CONNECT_REDIS_OPTIONS = {
  client: 'coatcheck makes its own Redis connection: pass redisUrl instead',
  prefix: 'use redisKeyPrefix',
  scanCount: 'coatcheck sizes its own SCAN steps: leave it out',
  disableTTL: 'coatcheck sessions always expire: give a long ttl instead',
}

// Refuses options the store does not read (a typo, or another store's option), which would
// otherwise be ignored without a word. Options given as undefined are skipped.
function checkOptionNames(options) {
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || OPTIONS.has(key)) continue
    const instead = Object.hasOwn(CONNECT_REDIS_OPTIONS, key) ? ` (a connect-redis option: ${CONNECT_REDIS_OPTIONS[key]})` : ''
    throw codedError('invalid_config', `unknown option ${JSON.stringify(key)}${instead}`)
  }
}

function defineStore(BaseStore) {
  // The class over `BaseStore`: express-session's `Store`, or `StandaloneStore` without it.
  return class CoatcheckStore extends BaseStore {
    /**
     * @param {object} [options] see index.d.ts
     */
    constructor(options = {}) {
      super()
      if (options === null || typeof options !== 'object') throw codedError('invalid_config', 'options must be an object')
      checkOptionNames(options)
      const ttl = options.ttl ?? ONE_DAY_SECONDS
      if (typeof ttl !== 'function') positiveSeconds(ttl, 'ttl')
      const serializer = options.serializer ?? JSON
      if (typeof serializer.stringify !== 'function' || typeof serializer.parse !== 'function') {
        throw codedError('invalid_config', 'serializer must have stringify and parse functions')
      }
      if (options.ownerOf !== undefined && typeof options.ownerOf !== 'function') {
        throw codedError('invalid_config', 'ownerOf must be a function of the session')
      }
      if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
        throw codedError('invalid_config', 'name must be a non-empty string')
      }
      this.ttl = ttl
      this.serializer = serializer
      this.disableTouch = Boolean(options.disableTouch)
      this.touchAfterMs = options.touchAfter === 0 ? undefined : positiveSeconds(options.touchAfter, 'touchAfter')
      if (this.disableTouch && this.touchAfterMs !== undefined) {
        throw codedError('invalid_config', 'disableTouch and touchAfter contradict each other: choose one')
      }
      this.ownerOf = options.ownerOf
      this.regenerateKeepsData = Boolean(options.regenerateKeepsData)
      this.warnedUnreadable = false
      this.native = new native.NativeStore({
        name: options.name,
        ttlMs: typeof ttl === 'number' ? ttl * 1000 : undefined,
        absoluteTimeoutMs: positiveSeconds(options.absoluteTimeout, 'absoluteTimeout'),
        maxSessions: positiveInteger(options.maxSessions, 'maxSessions'),
        maxBytes: positiveInteger(options.maxBytes, 'maxBytes'),
        maxSessionBytes: positiveInteger(options.maxSessionBytes, 'maxSessionBytes'),
        shards: positiveInteger(options.shards, 'shards'),
        sweepIntervalMs: positiveSeconds(options.sweepInterval, 'sweepInterval'),
        // disableTouch (connect-redis): a session expires its TTL after the last save.
        // touchAfter (connect-mongo): after the last save or touch, and touches come at most
        // once per interval. Either way reads must not slide the deadline.
        slideOnRead: !this.disableTouch && this.touchAfterMs === undefined,
        redisUrl: stringOption(options.redisUrl, 'redisUrl'),
        redisKeyPrefix: stringOption(options.redisKeyPrefix, 'redisKeyPrefix'),
        redisTimeoutMs: positiveSeconds(options.redisTimeout, 'redisTimeout'),
        redisWhenDown: stringOption(options.redisWhenDown, 'redisWhenDown'),
        redisStrict: options.redisStrict === undefined ? undefined : Boolean(options.redisStrict),
        persistPath: stringOption(options.persistPath, 'persistPath'),
        persistFsync: stringOption(options.persistFsync, 'persistFsync'),
        secrets: secretsOption(options.secret),
      })
      // After the native store checked the options originOf reads.
      this.origin = originOf(options)
      /** Whether sessions are shared through Redis (`redisUrl`). */
      this.shared = this.native.shared
      this.handle = this.native.handle
      this.calls = this.shared ? sharedCalls(this.native, this.handle) : localCalls(this.native, this.handle)
    }

    // Milliseconds the session should live, as connect-redis reckons it: what a `ttl` function
    // says of the session; else until `cookie.expires` if it has one; else the `ttl` seconds.
    _ttlMs(sess) {
      if (typeof this.ttl === 'function') {
        const ttl = this.ttl(sess)
        if (typeof ttl !== 'number' || !Number.isFinite(ttl)) throw codedError('invalid_argument', 'ttl(session) must return seconds')
        return ttl * 1000
      }
      const expires = sess?.cookie?.expires
      if (expires) {
        const at = expires instanceof Date ? expires.getTime() : Date.parse(expires)
        if (!Number.isNaN(at)) return at - Date.now()
      }
      return this.ttl * 1000
    }

    // What `serializer.parse` makes of a stored value, or UNREADABLE if it throws: such a
    // session is taken for missing, with a warning, as Django's backends take corrupted
    // session data. An error would answer every request of its user with a 500 for as long
    // as the session lives.
    _parseValue(value) {
      let sess
      try {
        sess = this.serializer.parse(value)
      } catch (thrown) {
        if (!this.warnedUnreadable) {
          this.warnedUnreadable = true
          const why = thrown instanceof Error ? thrown.message : String(thrown)
          process.emitWarning(
            `coatcheck: serializer.parse could not read a stored session (${why}); such sessions are taken for missing (said once per store)`,
            { code: 'COATCHECK_UNREADABLE_SESSION' },
          )
        }
        return UNREADABLE
      }
      if (typeof sess?.then === 'function') {
        Promise.resolve(sess).catch(nothing) // answered by the error below: not an unhandled rejection
        throw codedError('invalid_config', 'serializer.parse returned a Promise: it must return the session itself')
      }
      return sess
    }

    // The session in a native getText() answer, remembering what it was loaded as.
    _parse(sid, text) {
      const sess = this._parseValue(text.slice(VALUE_START))
      if (sess === UNREADABLE) return null
      if (sess === null || typeof sess !== 'object') return sess
      // The store's deadline is authoritative: after a touch, the cookie's expiry has moved.
      // Not for a cookie with a fixed date and no max age, which @fastify/session stores with
      // `originalMaxAge: null`: it keeps that date, and starts a new session once it passed.
      if (sess.cookie?.expires && sess.cookie.originalMaxAge !== null) {
        sess.cookie.expires = text.slice(0, EXPIRY_WIDTH)
      }
      sess[LOADED] = new Loaded(this.origin, sid, Number(text.slice(EXPIRY_WIDTH, VALUE_START)), text.slice(VALUE_START))
      return sess
    }

    _stringify(sess) {
      let value
      if (this.serializer === JSON) {
        value = JSON.stringify(sess)
      } else {
        // Another serializer may not honour toJSON: hand it the session without the marker.
        const plain = {}
        for (const key of Object.keys(sess)) if (key !== LOADED) plain[key] = sess[key]
        value = this.serializer.stringify(plain)
      }
      if (typeof value !== 'string') throw codedError('invalid_argument', 'serializer.stringify must return a string')
      return value
    }

    /**
     * Store contract: the session, or `null` when missing or expired. With `disableTouch` or
     * `touchAfter` the read leaves the expiry where the last save or touch put it.
     */
    get(sid, cb) {
      if (this.shared) {
        return this._report(cb, () => {
          checkSid(sid)
          return after(this.calls.getText(sid), (text) => (text === null ? null : this._parse(sid, text)))
        })
      }
      let error = null
      let result = null
      try {
        checkSid(sid)
        const text = native.getText(this.handle, sid)
        if (text !== null) result = this._parse(sid, text)
      } catch (thrown) {
        error = asStoreError(thrown)
      }
      return settle(cb, error, result)
    }

    /**
     * Store contract. A session this store loaded is written only over the version it was loaded
     * at: if another request saved meanwhile, this request's changes are merged into that
     * request's (see `mergeChanges`); if the session was destroyed meanwhile (logout, regenerate,
     * `destroyAllForOwner`, absolute timeout) nothing is stored and no error is reported, so a
     * revoked session never comes back. Any other session is stored as given (upsert). A
     * session whose cookie already expired is destroyed instead.
     */
    set(sid, sess, cb) {
      return this._report(cb, () => {
        checkSid(sid)
        const ttlMs = this._ttlMs(sess)
        const loaded = loadedAs(sess, this.origin, sid)
        if (ttlMs <= 0) return after(this.calls.destroy(sid), nothing)
        if (loaded !== undefined) return this._saveOverLoaded(sid, sess, loaded, ttlMs)
        const value = this._stringify(sess)
        const owner = this._ownerKeyOf(sess)
        return after(this.calls.set(sid, value, ttlMs), () => this._fileOwner(sid, owner))
      })
    }

    _saveOverLoaded(sid, sess, loaded, ttlMs) {
      const value = this._stringify(sess)
      if (value === loaded.text || (this.serializer === JSON && onlyExpiryDiffers(value, loaded.text))) {
        // Unchanged but for the cookie's expiry (express-session's `resave`, @fastify/session's
        // `rolling`): a touch, never a write.
        return after(this.calls.touch(sid, ttlMs), nothing)
      }
      const owner = this._ownerKeyOf(sess)
      return this._writeOver(sid, sess, loaded, ttlMs, value, owner, loaded.version, undefined, undefined, 0)
    }

    // One attempt to write `value` (whose owner key is `owner`) over `version`; on a conflict,
    // merges this request's changes into what is stored now and tries again, at most
    // MAX_MERGES times.
    _writeOver(sid, sess, loaded, ttlMs, value, owner, version, base, merged, merges) {
      return attempt(
        () => this.calls.setIfVersion(sid, value, version, ttlMs),
        (stored) => {
          loaded.version = stored
          loaded.text = value
          // This request's session now holds what was stored, so that a later save of it in
          // the same request does not take the other request's keys for removals.
          if (merged !== undefined) adopt(sess, merged)
          return this._fileOwner(sid, owner)
        },
        (thrown) => {
          if (thrown?.code === 'not_found') return undefined // revoked meanwhile: dropped
          if (thrown?.code !== 'conflict' || merges === MAX_MERGES) throw thrown
          return after(this.calls.getText(sid), (text) => {
            if (text === null) return undefined // revoked meanwhile: dropped
            const now = Number(text.slice(EXPIRY_WIDTH, VALUE_START))
            const current = this._parseValue(text.slice(VALUE_START))
            if (current === UNREADABLE) {
              // What the other request stored cannot be read here, so reads take the session
              // for missing: this request's session is written over it, whole, rather than
              // the save failing and its user being logged out by the next read.
              return this._writeOver(sid, sess, loaded, ttlMs, value, owner, now, base, merged, merges + 1)
            }
            base ??= this.serializer.parse(loaded.text)
            const next = mergeChanges(base, sess, current, (v) => this.serializer.stringify(v))
            const nextValue = this._stringify(next)
            const nextOwner = this._ownerKeyOf(next)
            return this._writeOver(sid, sess, loaded, ttlMs, nextValue, nextOwner, now, base, next, merges + 1)
          })
        },
      )
    }

    // The owner key `ownerOf` gives `sess` (null: none), or undefined without `ownerOf`.
    // Worked out before the write it goes with: a hook that throws, or an owner of the wrong
    // type, fails the save with nothing stored.
    _ownerKeyOf(sess) {
      if (!this.ownerOf) return undefined
      const owner = this.ownerOf(sess)
      return owner === undefined || owner === null ? null : ownerKey(owner)
    }

    _fileOwner(sid, owner) {
      if (owner === undefined) return undefined
      return after(this.calls.setOwner(sid, owner), nothing)
    }

    /**
     * Store contract: extend the expiry without rewriting the data. With `touchAfter`, at most
     * once per interval since the last save or touch; with `disableTouch`, never.
     */
    touch(sid, sess, cb) {
      return this._report(cb, () => {
        checkSid(sid)
        if (this.disableTouch) return undefined
        const ttlMs = this._ttlMs(sess)
        if (ttlMs <= 0) return after(this.calls.destroy(sid), nothing)
        return after(this.calls.touch(sid, ttlMs, this.touchAfterMs), nothing)
      })
    }

    /** Store contract. */
    destroy(sid, cb) {
      const reported = this._report(cb, () => {
        checkSid(sid)
        return after(this.calls.destroy(sid), nothing)
      })
      // express-session's `req.session.destroy()` with no callback passes `undefined` and drops
      // what comes back: a failure (Redis away with `redisWhenDown: 'fail'`, a full disk under
      // the restart log) would be an unhandled rejection, which ends the process. It becomes
      // a process warning instead. A caller who awaits the Promise still sees the rejection.
      if (reported instanceof Promise && arguments.length >= 2 && cb === undefined) {
        reported.catch((error) => process.emitWarning(error))
      }
      return reported
    }

    /** Every live session, as an array of session objects with their `id`. On Redis, every process's. */
    all(cb) {
      return this._report(cb, () =>
        after(this.calls.all(), (entries) =>
          entries.flatMap(({ id, value }) => {
            const sess = this._parseValue(value)
            if (sess === UNREADABLE) return []
            return [sess && typeof sess === 'object' ? Object.assign(sess, { id }) : sess]
          }),
        ),
      )
    }

    /** Number of live sessions. On Redis, every process's. */
    length(cb) {
      return this._report(cb, () => this.calls.count())
    }

    /** Ids of all live sessions. On Redis, every process's. */
    ids(cb) {
      return this._report(cb, () => this.calls.ids())
    }

    /** Removes every session. On Redis, every process's. */
    clear(cb) {
      return this._report(cb, () => after(this.calls.clear(), nothing))
    }

    /**
     * Stops the store's threads and gives back what it holds besides memory: the Redis
     * connection, and the restart log, which is compacted into one snapshot and unlocks its
     * directory, so that a new store may open it in this process once this settles. Closes
     * every store of the same `name`. Without `redisUrl` sessions stay readable; writes to a
     * store with `persistPath`, and calls on one with `redisUrl` that need Redis, then fail
     * with code `unavailable`. Idempotent. Garbage collection does the same, at a time of its
     * choosing.
     */
    close(cb) {
      return this._report(cb, () => after(unwrap(this.native.closeAsync()), nothing))
    }

    // Runs `work` and reports its result or error through `cb` (or as a Promise); `work` may
    // return a Promise (a store on Redis), which is reported when it settles.
    _report(cb, work) {
      let error = null
      let result
      try {
        result = work()
      } catch (thrown) {
        error = asStoreError(thrown)
      }
      if (result instanceof Promise) {
        const reported = result.catch((thrown) => {
          throw asStoreError(thrown)
        })
        if (typeof cb !== 'function') return reported
        // Through `settle`, on a tick of its own: a callback that throws is then an uncaught
        // exception, as on the local path, and not a rejection of a Promise nobody holds.
        reported.then(
          (value) => settle(cb, null, value),
          (thrown) => settle(cb, thrown),
        )
        return undefined
      }
      return settle(cb, error, result)
    }

    /**
     * express-session calls this from `req.session.regenerate()`. By default it behaves like
     * express-session's own (the data is dropped); with `regenerateKeepsData` it moves the data.
     */
    regenerate(req, fn) {
      if (this.regenerateKeepsData) return this.regenerateKeepingData(req, fn)
      return super.regenerate(req, fn)
    }

    /**
     * A new id for the request's session, keeping its data. The stored copy moves in one step
     * in the core: the old id is gone the moment the new one exists (session fixation defence).
     */
    regenerateKeepingData(req, cb) {
      return this._report(cb, () => {
        const current = req.session
        const oldId = req.sessionID
        checkSid(oldId)
        return after(this.calls.regenerate(oldId), (moved) => {
          const newId = moved ?? native.generateId()
          const text = moved === null ? null : this.calls.getText(newId)
          return after(text, (text) => this._adoptRegenerated(req, current, newId, text))
        })
      })
    }

    _adoptRegenerated(req, current, newId, text) {
      const data = {}
      for (const key of Object.keys(current)) if (key !== LOADED) data[key] = current[key]
      data.cookie = current.cookie
      // The save at the end of the request writes over the moved session as over a loaded
      // one. Loaded by this request but gone before the move (revoked): version 0 never
      // matches, so nothing is stored. Never stored at all (a first visit that logs in, with
      // saveUninitialized false): no marker, so the save stores it as the new session it is.
      // Written by another request since this one loaded it: version 0 again, so the save
      // merges this request's changes into what is stored instead of overwriting it.
      const loaded = loadedAs(current, this.origin)
      if (text === null) {
        if (loaded !== undefined) data[LOADED] = new Loaded(this.origin, newId, 0, loaded.text)
      } else {
        const stored = text.slice(VALUE_START)
        const base = loaded !== undefined ? loaded.text : stored
        const version = base === stored ? Number(text.slice(EXPIRY_WIDTH, VALUE_START)) : 0
        data[LOADED] = new Loaded(this.origin, newId, version, base)
      }
      req.sessionID = newId
      if (typeof this.createSession === 'function') {
        this.createSession(req, data)
      } else {
        req.session = data
      }
      return newId
    }

    /** File a session under an owner key (e.g. a user id), or remove it with `null`. */
    setOwner(sid, owner, cb) {
      return this._report(cb, () => {
        checkSid(sid)
        return after(this.calls.setOwner(sid, owner === null || owner === undefined ? null : ownerKey(owner)), nothing)
      })
    }

    /** Ids of the live sessions of `owner`. */
    sessionsOf(owner, cb) {
      return this._report(cb, () => {
        return this.calls.sessionsOf(ownerKey(owner))
      })
    }

    /** "Log out everywhere else": destroys every session of `owner` but `exceptSid`. */
    destroyAllForOwner(owner, exceptSid, cb) {
      if (typeof exceptSid === 'function') {
        cb = exceptSid
        exceptSid = undefined
      }
      return this._report(cb, () => {
        const key = ownerKey(owner)
        if (exceptSid !== undefined && exceptSid !== null) checkSid(exceptSid)
        return this.calls.destroyOwner(key, exceptSid ?? null)
      })
    }

    /** Counters and size, synchronously. */
    stats() {
      return this.native.stats()
    }

    /** A CSPRNG session id (24 bytes, base64url), usable as express-session's `genid`. */
    static generateId() {
      return native.generateId()
    }
  }
}

/**
 * The key an owner is filed under. User ids come as strings, numbers or bigints (a database's
 * integer key, `req.session.userId`); each maps to its decimal text, so `42`, `42n` and `'42'`
 * are one owner. Anything else is refused here, because it has no text that names it; the core
 * checks the text itself (not empty, at most 1024 bytes).
 */
function ownerKey(owner) {
  switch (typeof owner) {
    case 'string':
      return owner
    case 'bigint':
      return owner.toString()
    case 'number':
      if (Number.isFinite(owner)) return String(owner)
      break
  }
  throw codedError('invalid_argument', 'owner must be a string, a finite number or a bigint')
}

const MISSING_EXPRESS_SESSION =
  "express-session could not be found from coatcheck or from the application; pass it in: require('coatcheck')(session)"

/**
 * The base class when express-session is not found: enough for @fastify/session, which needs
 * only the Store methods; express-session's own calls fail with a message that says what to do
 * instead of "createSession is not a function".
 */
class StandaloneStore extends EventEmitter {
  createSession() {
    throw codedError('invalid_config', MISSING_EXPRESS_SESSION)
  }

  load(sid, fn) {
    fn(codedError('invalid_config', MISSING_EXPRESS_SESSION))
  }

  regenerate(req, fn) {
    fn(codedError('invalid_config', MISSING_EXPRESS_SESSION))
  }
}

// express-session as the application sees it: from coatcheck's own path (a hoisted install),
// else from the main module's or the working directory's (a linked or nested install).
function resolveExpressSession() {
  const origins = [__filename, require.main?.filename, path.join(process.cwd(), 'package.json')]
  for (const origin of origins) {
    if (!origin) continue
    try {
      return createRequire(origin)('express-session')
    } catch {}
  }
  return undefined
}

const CoatcheckStore = defineStore(resolveExpressSession()?.Store ?? StandaloneStore)
const classes = new WeakMap()

/**
 * `require('coatcheck')(session)`, as memorystore and connect-redis once did: the store class
 * built on the express-session module the application passes in.
 */
function coatcheck(session) {
  if (!session || typeof session.Store !== 'function') {
    throw codedError('invalid_argument', 'pass the express-session module: require(\'coatcheck\')(require(\'express-session\'))')
  }
  let Store = classes.get(session.Store)
  if (Store === undefined) {
    Store = defineStore(session.Store)
    classes.set(session.Store, Store)
  }
  return Store
}

const generateId = () => native.generateId()

// One assignment per name, the form Node's scanner of CommonJS exports recognises, so that
// `import { CoatcheckStore } from 'coatcheck'` works from an ES module.
module.exports = coatcheck
module.exports.coatcheck = coatcheck
module.exports.CoatcheckStore = CoatcheckStore
module.exports.generateId = generateId
module.exports.default = coatcheck
