'use strict'

// touchAfter and disableTouch as connect-mongo and connect-redis mean them, and how the store
// finds express-session; the restart log options.

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const path = require('node:path')
const fs = require('node:fs')
const os = require('node:os')
const { setTimeout: sleep } = require('node:timers/promises')
const express = require('express')
const session = require('express-session')
const coatcheck = require('..')
const { CoatcheckStore } = coatcheck
const { Client, withHttp } = require('./helpers')

const expiresAt = (ms) => ({ cookie: { expires: new Date(Date.now() + ms).toISOString() } })
const msLeft = (sess) => Date.parse(sess.cookie.expires) - Date.now()

test('touchAfter: reads do not extend the session; a touch applies once the interval has passed since the last save or touch', async () => {
  // Seconds apart, so that a busy machine cannot blur them: 10 s sessions, touches 2 s apart.
  const store = new CoatcheckStore({ touchAfter: 2 })
  await store.set('sid-touch-after', expiresAt(10_000))
  await sleep(300)
  const read = await store.get('sid-touch-after')
  assert.ok(msLeft(read) < 9_800, `a read left ${msLeft(read)} ms, as if it had slid the deadline`)
  await store.touch('sid-touch-after', expiresAt(10_000))
  assert.ok(msLeft(await store.get('sid-touch-after')) < 9_800, 'a touch within 2 s of the save is skipped')
  await sleep(1_900) // 2.2 s since the save, whatever the reads in between
  await store.touch('sid-touch-after', expiresAt(10_000))
  assert.ok(msLeft(await store.get('sid-touch-after')) > 9_800, 'the touch after the interval applies')
})

test('touchAfter keeps a session read on every request alive through touches alone', async () => {
  // express-session reads, then touches, on every request (rolling: false, resave: false).
  const store = new CoatcheckStore({ touchAfter: 0.1 })
  const app = express()
  app.use(session({ secret: 's', store, resave: false, saveUninitialized: false, cookie: { maxAge: 600 } }))
  app.get('/login', (req, res) => {
    req.session.user = 'gil'
    res.end()
  })
  app.get('/me', (req, res) => res.end(String(req.session.user)))
  await withHttp(app, async (base) => {
    const user = new Client(base)
    await user.get('/login')
    const until = Date.now() + 1500
    while (Date.now() < until) {
      assert.equal((await user.get('/me')).text, 'gil')
      await sleep(50)
    }
  })
})

test('disableTouch: a session expires its TTL after the last save, whatever the reads and touches', async () => {
  const store = new CoatcheckStore({ disableTouch: true })
  await store.set('sid-no-touch', expiresAt(400))
  await sleep(150)
  await store.get('sid-no-touch')
  await store.touch('sid-no-touch', expiresAt(400))
  assert.ok(msLeft(await store.get('sid-no-touch')) < 300)
  await sleep(300)
  assert.equal(await store.get('sid-no-touch'), null)
})

test('disableTouch and touchAfter together are refused', () => {
  assert.throws(() => new CoatcheckStore({ disableTouch: true, touchAfter: 10 }), { code: 'invalid_config' })
})

test("require('coatcheck')(session) builds the store on the express-session the application passes", async () => {
  const Store = coatcheck(session)
  assert.ok(new Store() instanceof session.Store)
  assert.equal(coatcheck(session), Store, 'one class per express-session module')
  assert.throws(() => coatcheck({}), { code: 'invalid_argument' })
  const app = express()
  app.use(session({ secret: 's', store: new Store(), resave: false, saveUninitialized: false }))
  app.get('/count', (req, res) => {
    req.session.n = (req.session.n ?? 0) + 1
    res.end(String(req.session.n))
  })
  await withHttp(app, async (base) => {
    const user = new Client(base)
    assert.equal((await user.get('/count')).text, '1')
    assert.equal((await user.get('/count')).text, '2')
  })
})

test('without express-session the store still serves @fastify/session, and express-session calls fail with a clear error', () => {
  // A child process in which express-session cannot be resolved from anywhere.
  const hideExpressSession = `
    const Module = require('node:module')
    const resolve = Module._resolveFilename
    Module._resolveFilename = function (request, ...rest) {
      if (request === 'express-session') throw Object.assign(new Error('not found'), { code: 'MODULE_NOT_FOUND' })
      return resolve.call(this, request, ...rest)
    }`
  const script = `
    ${hideExpressSession}
    const { CoatcheckStore } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const store = new CoatcheckStore()
    store.set('sid-1', { n: 1 }, (err) => {
      store.get('sid-1', (err2, sess) => {
        let message
        try { store.createSession({}, sess) } catch (e) { message = e.code + ': ' + e.message }
        console.log(JSON.stringify({ n: sess.n, err: err || err2 || null, message }))
      })
    })`
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }))
  assert.equal(out.n, 1)
  assert.equal(out.err, null)
  assert.match(out.message, /^invalid_config: express-session could not be found/)
  assert.match(out.message, /require\('coatcheck'\)\(session\)/)
})

test('persistPath: a second store on a directory in use, a log with Redis and bad values are invalid_config', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coatcheck-options-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const sessions = path.join(dir, 'sessions')
  const first = new CoatcheckStore({ persistPath: sessions, persistFsync: 'never' })
  assert.equal(first.stats().log.restored, 0)
  assert.equal(fs.statSync(sessions).mode & 0o777, 0o700)
  assert.throws(() => new CoatcheckStore({ persistPath: sessions }), { code: 'invalid_config', message: /in use/ })
  assert.throws(() => new CoatcheckStore({ persistPath: path.join(dir, 'other'), redisUrl: 'redis://127.0.0.1:6379' }), { code: 'invalid_config', message: /redis_url/ })
  assert.throws(() => new CoatcheckStore({ persistPath: path.join(dir, 'no', 'parent') }), { code: 'invalid_config', message: /parent/ })
  assert.throws(() => new CoatcheckStore({ persistPath: 42 }), { code: 'invalid_config', message: /persistPath must be a string/ })
  assert.throws(() => new CoatcheckStore({ persistPath: path.join(dir, 'x'), persistFsync: 'sometimes' }), { code: 'invalid_config', message: /persistFsync/ })
})

test('close() frees the directory for a new store while the old one is still referenced, as in a test suite', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coatcheck-close-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const sessions = path.join(dir, 'sessions')
  const first = new CoatcheckStore({ persistPath: sessions, persistFsync: 'never' })
  await first.set('kept', { cookie: {}, user: 'ann' })
  await first.close()
  assert.equal((await first.get('kept')).user, 'ann', 'still readable')
  await assert.rejects(first.set('refused', { cookie: {} }), { code: 'unavailable' })
  const second = new CoatcheckStore({ persistPath: sessions, persistFsync: 'never' })
  assert.equal((await second.get('kept')).user, 'ann')
  await new Promise((resolve, reject) => first.close((err) => (err ? reject(err) : resolve()))) // again, by callback
  // A named store that is closed is unregistered: the next one of that name is a new store.
  const named = new CoatcheckStore({ name: 'close-test', persistPath: path.join(dir, 'named'), persistFsync: 'never' })
  await named.close()
  const again = new CoatcheckStore({ name: 'close-test', persistPath: path.join(dir, 'named'), persistFsync: 'never' })
  await again.set('new', { cookie: {} })
  // Closing the old handle again leaves the name to the new store.
  await named.close()
  const third = new CoatcheckStore({ name: 'close-test', persistPath: path.join(dir, 'named'), persistFsync: 'never' })
  assert.notEqual(await third.get('new'), null, 'the same store as `again`')
  await again.close()
  await second.close()
})
