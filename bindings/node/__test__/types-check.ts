// Compiled with `tsc --noEmit` by `make test-node`: index.d.ts must accept real usage.
import express from 'express'
import session from 'express-session'
import coatcheck, { CoatcheckStore, generateId, CoatcheckStoreOptions, Owner, CoatcheckError } from '..'

const options: CoatcheckStoreOptions = { ttl: 3600, maxSessions: 100_000, touchAfter: 60, ownerOf: (s) => s.userId }
const store = new CoatcheckStore(options)
const app = express()
// Structurally an express-session Store, without index.d.ts importing express-session.
app.use(session({ secret: 'keyboard cat', store, genid: generateId, resave: false, saveUninitialized: false }))
const FromApp = coatcheck(session)
app.use(session({ secret: 'keyboard cat', store: new FromApp({ disableTouch: true }) }))

async function usage(): Promise<number> {
  const s = await store.get('sid')
  // Without a callback every Store method returns a Promise.
  const saved: Promise<void> = store.set('sid', { cookie: s!.cookie })
  await saved
  await store.touch('sid', { cookie: s!.cookie })
  await store.destroy('sid')
  await store.clear()
  const ids: string[] = await store.ids()
  const n: number = await store.length()
  store.get('sid', (err, sess) => void [err, sess])
  store.set('sid', {}, (err) => void (err as CoatcheckError | undefined)?.code)
  const destroyed: number = await store.destroyAllForOwner('user-1', ids[0])
  // A database's integer key is an owner as it is.
  const owner: Owner = 42
  await store.setOwner(ids[0], owner)
  const devices: string[] = await store.sessionsOf(42n)
  const others: number = await store.destroyAllForOwner(42, ids[0])
  return n + destroyed + others + devices.length + store.stats().sessions
}
void usage
