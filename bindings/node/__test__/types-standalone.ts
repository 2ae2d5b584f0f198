// Compiled by `make test-node` with tsconfig.standalone.json, whose `types` leave out
// express-session's and Express's: a Fastify-only or plain-Node project must compile.
import { CoatcheckStore, SessionData } from '..'

async function standalone(): Promise<SessionData | null> {
  const store = new CoatcheckStore({ touchAfter: 60 })
  await store.set('sid', { cookie: { maxAge: 1000 }, user: 'ann' })
  return store.get('sid')
}
void standalone
