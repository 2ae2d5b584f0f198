// Public types of the npm package `coatcheck`. The native layer's types are generated into
// native.d.ts by `napi build`; this file describes the JavaScript Store on top of it.

// No import of express-session or Fastify types: the store's types stand alone, so a Fastify-only
// or plain-Node TypeScript project compiles without @types/express-session, and the class is
// still structurally an express-session `Store` where those types are present.
import { EventEmitter } from 'node:events'
import type { NativeStats } from './native'

export type { NativeStats as CoatcheckStats } from './native'

/**
 * An Error whose `code` is one of coatcheck's stable error codes, the same in C, Python and
 * Node: `bad_signature` (forged or tampered token), `not_found` (no such live session),
 * `too_large` (over `maxSessionBytes`), `store_full` (budget reached, nothing evictable),
 * `conflict` (a versioned write lost a race too many times), `invalid_id`, `invalid_config`
 * (bad options, or express-session missing), `invalid_argument` (another bad argument, or a
 * serializer or `ownerOf` that threw), `unavailable` (Redis did not answer within
 * `redisTimeout`, or is down with `redisWhenDown: 'fail'`; or the restart log cannot be written,
 * so a write was refused, or made in memory only if its own append failed) and `internal` (a
 * native failure that is a bug: please report it).
 */
export interface CoatcheckError extends Error {
  code:
    | 'bad_signature'
    | 'not_found'
    | 'too_large'
    | 'store_full'
    | 'conflict'
    | 'invalid_id'
    | 'invalid_config'
    | 'invalid_argument'
    | 'unavailable'
    | 'internal'
}

/** A session as the frameworks hand it to a store: any object, usually with a `cookie`. */
export interface SessionData {
  cookie?: { expires?: Date | string | null; maxAge?: number | null; originalMaxAge?: number | null; [key: string]: any }
  [key: string]: any
}

export interface Serializer {
  stringify(session: unknown): string
  /**
   * The session itself (not a Promise). A stored session it throws on is taken for missing,
   * with one process warning (`COATCHECK_UNREADABLE_SESSION`) per store.
   */
  parse(text: string): any
}

/** The constructor refuses any other option with `invalid_config` (connect-redis's `client` included). */
export interface CoatcheckStoreOptions {
  /**
   * Seconds a session lives when its cookie has no `expires`. Default 86400. Or a function of the
   * session giving its seconds, which decides over the cookie's `expires` (as in connect-redis).
   * Every lifetime, from `ttl` or from a cookie's `expires`, is cut to 1,000 years.
   */
  ttl?: number | ((session: SessionData) => number)
  /** Seconds from creation after which a session expires whatever its activity. Default: none. */
  absoluteTimeout?: number
  /** Most sessions kept; beyond it, never-read sessions are evicted first, then the least recently used. */
  maxSessions?: number
  /** Most bytes kept (serialized sessions plus a fixed per-session overhead). */
  maxBytes?: number
  /** Largest serialized session in bytes; larger ones fail with code `too_large`. Default 1 MiB. */
  maxSessionBytes?: number
  /**
   * connect-mongo's `touchAfter`: seconds. Reads do not extend a session; a touch extends it at
   * most once per this interval since the last save or touch.
   */
  touchAfter?: number
  /** connect-redis's `disableTouch`: a session expires its TTL after the last save; reads and touches do not extend it. */
  disableTouch?: boolean
  /** How sessions become strings and back. Default: JSON. */
  serializer?: Serializer
  /** Stores with the same name in one process, across worker_threads, share one table. */
  name?: string
  /** File each session under an owner key (e.g. `s => s.userId`) for `sessionsOf` / `destroyAllForOwner`. */
  ownerOf?: (session: SessionData) => Owner | null | undefined
  /** Make `req.session.regenerate()` keep the session's data under the new id. Default false. */
  regenerateKeepsData?: boolean
  /** Lock stripes, a power of two. Default: from the number of cores. */
  shards?: number
  /** Seconds between sweeps of expired sessions. Default 1. */
  sweepInterval?: number
  /**
   * Share sessions with every process and host on one Redis: `redis://[user:password@]host[:port][/db]`,
   * `rediss://…` for TLS (the certificate checked against the system's CA store, which `SSL_CERT_FILE`
   * replaces; `#insecure` at the end skips the check), or `redis+unix:///path/to/socket`.
   * Writes reach Redis before they complete; reads are answered in-process from a near cache that
   * Redis invalidates. Calls that need the network run off the main thread. Default: none.
   */
  redisUrl?: string
  /** Prefix of every Redis key the store uses; stores that share sessions use the same. Default `coatcheck:`. */
  redisKeyPrefix?: string
  /** Seconds a call waits for Redis at most. Default 0.05. */
  redisTimeout?: number
  /** While Redis cannot be reached: serve from this process's copies (`'serveLocal'`, default) or fail with `unavailable`. */
  redisWhenDown?: 'serveLocal' | 'fail'
  /** Check every read against Redis (one round trip per read). Default false. */
  redisStrict?: boolean
  /**
   * With `redisUrl`: seals the session ids Redis keeps (for `all()`, `ids()` and `sessionsOf`),
   * so that reading Redis yields no usable id; express-session's `secret` will do. The first
   * seals, all open. Without it `all()` and `ids()` fail with `invalid_config` on Redis, and the
   * owner index holds ids as they are.
   */
  secret?: string | string[]
  /**
   * Keep sessions across restarts of this process: a directory (created if missing, mode 0700;
   * its parent must exist) where every change is appended to a log before the call completes,
   * compacted into a snapshot in the background, and read back by the next store on the same
   * path. One process owns the directory (a second gets `invalid_config`); to share sessions
   * between processes use `redisUrl`, which cannot be combined with this. Default: none.
   */
  persistPath?: string
  /**
   * When the restart log is synced to disk. Every change is written to the file before the call
   * completes whatever this says (that survives `kill -9`); this is about power loss.
   * `'interval'` (default): once a second, off the main thread. `'always'`: a disk flush in every
   * write, on the calling thread. `'never'`: left to the OS.
   */
  persistFsync?: 'never' | 'interval' | 'always'
}

type Callback<T> = (err: CoatcheckError | null, result?: T) => void

/** An owner key: a user id as a string, a number or a bigint (`42`, `42n` and `'42'` are one owner). */
export type Owner = string | number | bigint

/**
 * The store. Pass it as `store` to express-session or @fastify/session. Saves of a session
 * this store loaded merge with concurrent saves of the same session, and never bring back a
 * session destroyed meanwhile (see the README's "Concurrent requests" and "Revocation").
 * Each method takes a callback, or returns a Promise without one.
 */
export declare class CoatcheckStore extends EventEmitter {
  constructor(options?: CoatcheckStoreOptions)
  /** Whether sessions are shared through Redis (`redisUrl`). */
  readonly shared: boolean
  get(sid: string): Promise<SessionData | null>
  get(sid: string, callback: (err: any, session?: SessionData | null) => void): void
  set(sid: string, session: SessionData): Promise<void>
  set(sid: string, session: SessionData, callback: (err?: any) => void): void
  touch(sid: string, session: SessionData): Promise<void>
  touch(sid: string, session: SessionData, callback: (err?: any) => void): void
  destroy(sid: string): Promise<void>
  destroy(sid: string, callback: (err?: any) => void): void
  /** Every live session with its `id` (on Redis, every process's: needs `secret`). */
  all(): Promise<Array<SessionData & { id: string }>>
  all(callback: (err: any, sessions?: Array<SessionData & { id: string }> | null) => void): void
  /** Live sessions (on Redis, every process's, counted there). */
  length(): Promise<number>
  length(callback: (err: any, length?: number) => void): void
  /** Ids of the live sessions (on Redis, every process's: needs `secret`). */
  ids(): Promise<string[]>
  ids(callback: Callback<string[]>): void
  /** Removes every session (on Redis, every process's; `unavailable` while Redis is down). */
  clear(): Promise<void>
  clear(callback: (err?: any) => void): void
  /**
   * Stops the store's threads, closes its Redis connection (after sending the touches it batched,
   * within `redisTimeout`), and compacts and unlocks its restart log, so that a new store may open
   * `persistPath` in this process once the promise settles. Closes every store of the same `name`.
   * Sessions stay readable without `redisUrl`; writes to a store with `persistPath`, and every call
   * on a store with `redisUrl` that needs Redis, then fail with `unavailable`.
   */
  close(): Promise<void>
  close(callback: (err?: any) => void): void
  /** express-session's Store methods (from express-session, or failing clearly without it). */
  createSession(req: any, session: SessionData): any
  load(sid: string, callback: (err: any, session?: any) => any): void
  regenerate(req: any, callback: (err?: any) => any): void
  /** A new id for express-session's `req.session`, keeping its data; returns the new id. */
  regenerateKeepingData(req: any): Promise<string>
  regenerateKeepingData(req: any, callback: Callback<string>): void
  setOwner(sid: string, owner: Owner | null): Promise<void>
  setOwner(sid: string, owner: Owner | null, callback: Callback<void>): void
  /** Ids of the live sessions of `owner` (session ids, as `req.sessionID`). */
  sessionsOf(owner: Owner): Promise<string[]>
  sessionsOf(owner: Owner, callback: Callback<string[]>): void
  /** Destroys every session of `owner` except `exceptSid`; resolves to how many were destroyed. */
  destroyAllForOwner(owner: Owner, exceptSid?: string | null): Promise<number>
  destroyAllForOwner(owner: Owner, exceptSid: string | null | undefined, callback: Callback<number>): void
  destroyAllForOwner(owner: Owner, callback: Callback<number>): void
  stats(): NativeStats
  static generateId(): string
}

/**
 * `require('coatcheck')(session)`: the store class built on the express-session module the
 * application passes in, for installs where coatcheck cannot resolve express-session itself.
 */
export declare function coatcheck(session: { Store: abstract new (...args: any[]) => any }): typeof CoatcheckStore
export default coatcheck

/** A CSPRNG session id (24 random bytes, 32 base64url characters), usable as express-session's `genid`. */
export declare function generateId(): string
