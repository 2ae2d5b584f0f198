// Public types of the npm package `coatcheck`. The native layer's types are generated into
// native.d.ts by `napi build`; this file describes the JavaScript Store on top of it.

import { Store, SessionData } from 'express-session'
import type { NativeStats } from './native'

export type { NativeStats as CoatcheckStats } from './native'

/** An Error whose `code` is one of coatcheck's stable error codes. */
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
}

export interface Serializer {
  stringify(session: unknown): string
  parse(text: string): any
}

export interface CoatcheckStoreOptions {
  /** Seconds a session lives when its cookie has no `expires`; or a function of the session. Default 86400. */
  ttl?: number | ((session: SessionData) => number)
  /** Seconds from creation after which a session expires whatever its activity. Default: none. */
  absoluteTimeout?: number
  /** Most sessions kept; beyond it, never-read sessions are evicted first, then the least recently used. */
  maxSessions?: number
  /** Most bytes kept (serialized sessions plus a fixed per-session overhead). */
  maxBytes?: number
  /** Largest serialized session in bytes; larger ones fail with code `too_large`. Default 1 MiB. */
  maxSessionBytes?: number
  /** Skip a touch when the session was used less than this many seconds ago. */
  touchAfter?: number
  /** Make `touch` a no-op. */
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
}

type Callback<T> = (err: CoatcheckError | null, result?: T) => void

/** An owner key: a user id as a string, a number or a bigint (`42`, `42n` and `'42'` are one owner). */
export type Owner = string | number | bigint

export declare class CoatcheckStore extends Store {
  constructor(options?: CoatcheckStoreOptions)
  get(sid: string, callback: (err: any, session?: SessionData | null) => void): void
  get(sid: string): Promise<SessionData | null>
  set(sid: string, session: SessionData, callback?: (err?: any) => void): void
  set(sid: string, session: SessionData): Promise<void>
  touch(sid: string, session: SessionData, callback?: () => void): void
  touch(sid: string, session: SessionData): Promise<void>
  destroy(sid: string, callback?: (err?: any) => void): void
  destroy(sid: string): Promise<void>
  all(callback: (err: any, sessions?: Array<SessionData & { id: string }> | null) => void): void
  all(): Promise<Array<SessionData & { id: string }>>
  length(callback: (err: any, length?: number) => void): void
  length(): Promise<number>
  ids(callback: Callback<string[]>): void
  ids(): Promise<string[]>
  clear(callback?: (err?: any) => void): void
  clear(): Promise<void>
  /** A new id for `req.session`, keeping its data; returns the new id. */
  regenerateKeepingData(req: Express.Request, callback: Callback<string>): void
  regenerateKeepingData(req: Express.Request): Promise<string>
  setOwner(sid: string, owner: Owner | null, callback: Callback<void>): void
  setOwner(sid: string, owner: Owner | null): Promise<void>
  sessionsOf(owner: Owner, callback: Callback<string[]>): void
  sessionsOf(owner: Owner): Promise<string[]>
  /** Destroys every session of `owner` except `exceptSid`; resolves to how many were destroyed. */
  destroyAllForOwner(owner: Owner, exceptSid: string | null | undefined, callback: Callback<number>): void
  destroyAllForOwner(owner: Owner, callback: Callback<number>): void
  destroyAllForOwner(owner: Owner, exceptSid?: string | null): Promise<number>
  stats(): NativeStats
  static generateId(): string
}

/** A CSPRNG session id (24 random bytes, 32 base64url characters), usable as express-session's `genid`. */
export declare function generateId(): string
