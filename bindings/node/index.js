'use strict'

// The npm package `coatcheck`: an express-session Store (also usable by @fastify/session)
// over the native session table. Behaviour lives in the Rust core; this file only adapts the
// Store contract: callbacks or Promises, TTLs from the cookie, (de)serialization.

const { EventEmitter } = require('node:events')
const native = require('./native.js')

let BaseStore = EventEmitter
try {
  // express-session is an optional peer: with it, this is a real `session.Store` (with
  // `createSession`, `load`, `regenerate`); without it (e.g. @fastify/session), an EventEmitter.
  BaseStore = require('express-session').Store
} catch {}

const ONE_DAY_SECONDS = 86400
const EXPIRY_DIGITS = 13

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

function positiveInteger(value, name) {
  if (value === undefined || value === null) return undefined
  if (!Number.isSafeInteger(value) || value < 1) throw codedError('invalid_config', `${name} must be a positive integer`)
  return value
}

class CoatcheckStore extends BaseStore {
  /**
   * @param {object} [options] see index.d.ts
   */
  constructor(options = {}) {
    super()
    if (options === null || typeof options !== 'object') throw codedError('invalid_config', 'options must be an object')
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
    this.ownerOf = options.ownerOf
    this.regenerateKeepsData = Boolean(options.regenerateKeepsData)
    this.native = new native.NativeStore({
      name: options.name,
      ttlMs: typeof ttl === 'number' ? ttl * 1000 : undefined,
      absoluteTimeoutMs: positiveSeconds(options.absoluteTimeout, 'absoluteTimeout'),
      maxSessions: positiveInteger(options.maxSessions, 'maxSessions'),
      maxBytes: positiveInteger(options.maxBytes, 'maxBytes'),
      maxSessionBytes: positiveInteger(options.maxSessionBytes, 'maxSessionBytes'),
      shards: positiveInteger(options.shards, 'shards'),
      sweepIntervalMs: positiveSeconds(options.sweepInterval, 'sweepInterval'),
    })
  }

  // Milliseconds the session should live: until `cookie.expires` if it has one (as
  // connect-redis does), else the `ttl` option.
  _ttlMs(sess) {
    const expires = sess?.cookie?.expires
    if (expires) {
      const at = expires instanceof Date ? expires.getTime() : Date.parse(expires)
      if (!Number.isNaN(at)) return at - Date.now()
    }
    const ttl = typeof this.ttl === 'function' ? this.ttl(sess) : this.ttl
    if (typeof ttl !== 'number' || !Number.isFinite(ttl)) throw codedError('invalid_argument', 'ttl(session) must return seconds')
    return ttl * 1000
  }

  // `text` is the native getText() answer: 13 digits of milliseconds left, then the value.
  _parse(text) {
    const sess = this.serializer.parse(text.slice(EXPIRY_DIGITS))
    // The store's deadline is authoritative: after a touch, the cookie's expiry has moved.
    if (sess?.cookie?.expires) {
      sess.cookie.expires = new Date(Date.now() + Number(text.slice(0, EXPIRY_DIGITS))).toISOString()
    }
    return sess
  }

  /** Store contract: the session, or `null` when missing or expired. */
  get(sid, cb) {
    let error = null
    let result = null
    try {
      checkSid(sid)
      const text = this.native.getText(sid)
      if (text !== null) result = this._parse(text)
    } catch (thrown) {
      error = asStoreError(thrown)
    }
    return settle(cb, error, result)
  }

  /** Store contract: upsert. A session whose cookie already expired is destroyed instead. */
  set(sid, sess, cb) {
    let error = null
    try {
      checkSid(sid)
      const ttlMs = this._ttlMs(sess)
      const value = this.serializer.stringify(sess)
      if (typeof value !== 'string') throw codedError('invalid_argument', 'serializer.stringify must return a string')
      const owner = this.ownerOf ? this.ownerOf(sess) : undefined
      if (ttlMs <= 0) {
        this.native.destroy(sid)
      } else {
        this.native.set(sid, value, ttlMs)
        if (this.ownerOf) this.native.setOwner(sid, owner === undefined || owner === null ? null : ownerKey(owner))
      }
    } catch (thrown) {
      error = asStoreError(thrown)
    }
    return settle(cb, error)
  }

  /** Store contract: extend the expiry without rewriting the data. */
  touch(sid, sess, cb) {
    let error = null
    try {
      checkSid(sid)
      if (!this.disableTouch) {
        const ttlMs = this._ttlMs(sess)
        if (ttlMs <= 0) this.native.destroy(sid)
        else this.native.touch(sid, ttlMs, this.touchAfterMs)
      }
    } catch (thrown) {
      error = asStoreError(thrown)
    }
    return settle(cb, error)
  }

  /** Store contract. */
  destroy(sid, cb) {
    let error = null
    try {
      checkSid(sid)
      this.native.destroy(sid)
    } catch (thrown) {
      error = asStoreError(thrown)
    }
    return settle(cb, error)
  }

  /** Every live session, as an array of session objects with their `id`. */
  all(cb) {
    return this._report(cb, () =>
      this.native.all().map(({ id, value }) => {
        const sess = this.serializer.parse(value)
        return sess && typeof sess === 'object' ? Object.assign(sess, { id }) : sess
      }),
    )
  }

  /** Number of sessions (expired ones count until the next sweep, at most one second). */
  length(cb) {
    return this._report(cb, () => this.native.len())
  }

  /** Ids of all live sessions. */
  ids(cb) {
    return this._report(cb, () => this.native.ids())
  }

  clear(cb) {
    return this._report(cb, () => this.native.clear())
  }

  // The less frequent methods share this: run `work`, report its result or error.
  _report(cb, work) {
    let error = null
    let result
    try {
      result = work()
    } catch (thrown) {
      error = asStoreError(thrown)
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
      const newId = this.native.regenerate(oldId) ?? native.generateId()
      const data = {}
      for (const key of Object.keys(current)) data[key] = current[key]
      data.cookie = current.cookie
      req.sessionID = newId
      if (typeof this.createSession === 'function') {
        this.createSession(req, data)
      } else {
        req.session = data
      }
      return newId
    })
  }

  /** File a session under an owner key (e.g. a user id), or remove it with `null`. */
  setOwner(sid, owner, cb) {
    return this._report(cb, () => {
      checkSid(sid)
      this.native.setOwner(sid, owner === null || owner === undefined ? null : ownerKey(owner))
      return undefined
    })
  }

  /** Ids of the live sessions of `owner`. */
  sessionsOf(owner, cb) {
    return this._report(cb, () => {
      return this.native.sessionsOf(ownerKey(owner))
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
      return this.native.destroyOwner(key, exceptSid ?? null)
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

const generateId = () => native.generateId()

module.exports = { CoatcheckStore, generateId }
