'use strict'

// express-session with CoatcheckStore in a real Express app over real HTTP on 127.0.0.1.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { setTimeout: sleep } = require('node:timers/promises')
const express = require('express')
const session = require('express-session')
const { CoatcheckStore, generateId } = require('..')
const { Client, listen, rawGet, badCookies } = require('./helpers')

function app(store, cookie = {}) {
  const a = express()
  a.use(express.json())
  a.use(
    session({
      secret: 'keyboard cat',
      store,
      genid: generateId,
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax', maxAge: 60_000, ...cookie },
    }),
  )
  a.get('/count', (req, res) => {
    req.session.views = (req.session.views ?? 0) + 1
    res.json({ views: req.session.views, id: req.sessionID })
  })
  a.post('/cart', (req, res) => {
    req.session.cart = req.body.item
    res.json({ id: req.sessionID })
  })
  a.post('/login', (req, res, next) => {
    req.session.regenerate((err) => {
      if (err) return next(err)
      req.session.user = req.body.user
      res.json({ id: req.sessionID, cart: req.session.cart ?? null })
    })
  })
  a.get('/me', (req, res) => res.json({ user: req.session.user ?? null, cart: req.session.cart ?? null, id: req.sessionID }))
  a.post('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.json({ ok: true }))))
  return a
}

async function withServer(store, cookie, body) {
  const server = http.createServer(app(store, cookie))
  const base = await listen(server)
  try {
    await body(base)
  } finally {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
}

test('login creates a session that the next request sees', async () => {
  const store = new CoatcheckStore()
  await withServer(store, {}, async (base) => {
    const alice = new Client(base)
    await alice.post('/login', { user: 'alice' })
    assert.match(alice.lastSetCookie, /connect\.sid=s%3A/)
    assert.match(alice.lastSetCookie, /HttpOnly/)
    assert.match(alice.lastSetCookie, /SameSite=Lax/)
    assert.equal((await alice.get('/me')).json.user, 'alice')
    assert.equal(await store.length(), 1)
  })
})

test('the page-view counter counts per session', async () => {
  await withServer(new CoatcheckStore(), {}, async (base) => {
    const a = new Client(base)
    const b = new Client(base)
    assert.equal((await a.get('/count')).json.views, 1)
    assert.equal((await a.get('/count')).json.views, 2)
    assert.equal((await b.get('/count')).json.views, 1)
    assert.equal((await a.get('/count')).json.views, 3)
  })
})

test('regenerate at login gives a new id and the old cookie no longer works', async () => {
  const store = new CoatcheckStore()
  await withServer(store, {}, async (base) => {
    const user = new Client(base)
    const before = (await user.post('/cart', { item: 'book' })).json.id
    const oldCookie = user.cookies.get('connect.sid')
    const after = (await user.post('/login', { user: 'bob' })).json.id
    assert.notEqual(after, before)
    assert.equal(await store.get(before), null)
    const attacker = new Client(base)
    attacker.cookies.set('connect.sid', oldCookie)
    assert.equal((await attacker.get('/me')).json.user, null)
    assert.equal((await user.get('/me')).json.user, 'bob')
  })
})

test('with regenerateKeepsData the data moves to the new id', async () => {
  const store = new CoatcheckStore({ regenerateKeepsData: true })
  await withServer(store, {}, async (base) => {
    const user = new Client(base)
    const before = (await user.post('/cart', { item: 'book' })).json.id
    const login = (await user.post('/login', { user: 'carol' })).json
    assert.notEqual(login.id, before)
    assert.equal(login.cart, 'book')
    assert.equal(await store.get(before), null)
    const me = (await user.get('/me')).json
    assert.deepEqual([me.user, me.cart, me.id], ['carol', 'book', login.id])
  })
})

test('with regenerateKeepsData a first-visit login is stored like any new session', async () => {
  // saveUninitialized: false stores nothing before the login, so the session being
  // regenerated was never stored: it is new, not revoked, and its save must create it.
  const store = new CoatcheckStore({ regenerateKeepsData: true })
  await withServer(store, {}, async (base) => {
    const user = new Client(base)
    const login = (await user.post('/login', { user: 'dave' })).json
    const me = (await user.get('/me')).json
    assert.deepEqual([me.user, me.id], ['dave', login.id])
    assert.equal(await store.length(), 1)
  })
})

test('with regenerateKeepsData a login from a session destroyed meanwhile stores nothing', async () => {
  const store = new CoatcheckStore({ regenerateKeepsData: true })
  const a = express()
  a.use(express.json())
  a.use(session({ secret: 'keyboard cat', store, genid: generateId, resave: false, saveUninitialized: false }))
  a.post('/cart', (req, res) => {
    req.session.cart = req.body.item
    res.json({ id: req.sessionID })
  })
  // Another request (logout in another tab) destroys the session while this one runs.
  a.post('/login-after-logout', (req, res, next) =>
    store.destroy(req.sessionID, (err) => {
      if (err) return next(err)
      req.session.regenerate((err) => {
        if (err) return next(err)
        req.session.user = 'mallory'
        res.json({ id: req.sessionID })
      })
    }),
  )
  a.get('/me', (req, res) => res.json({ user: req.session.user ?? null }))
  const server = http.createServer(a)
  const base = await listen(server)
  try {
    const user = new Client(base)
    await user.post('/cart', { item: 'book' })
    await user.post('/login-after-logout', {})
    assert.equal((await user.get('/me')).json.user, null)
    assert.equal(await store.length(), 0)
  } finally {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

test('"log out my other devices" works with a numeric user id, as the README writes it', async () => {
  const store = new CoatcheckStore({ ownerOf: (s) => s.userId })
  const a = express()
  a.use(express.json())
  a.use(session({ secret: 'keyboard cat', store, genid: generateId, resave: false, saveUninitialized: false }))
  a.post('/login', (req, res, next) =>
    req.session.regenerate((err) => {
      if (err) return next(err)
      req.session.userId = req.body.userId // a database's integer key
      res.json({ id: req.sessionID })
    }),
  )
  a.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null }))
  a.post('/logout-others', async (req, res, next) => {
    try {
      const destroyed = await store.destroyAllForOwner(req.session.userId, req.sessionID)
      res.json({ destroyed, devices: await store.sessionsOf(req.session.userId) })
    } catch (err) {
      next(err)
    }
  })
  const server = http.createServer(a)
  const base = await listen(server)
  try {
    const phone = new Client(base)
    const laptop = new Client(base)
    const stranger = new Client(base)
    const { id: phoneId } = (await phone.post('/login', { userId: 42 })).json
    await laptop.post('/login', { userId: 42 })
    await stranger.post('/login', { userId: 7 })
    const result = await phone.post('/logout-others')
    assert.equal(result.status, 200, result.text)
    assert.deepEqual(result.json, { destroyed: 1, devices: [phoneId] })
    assert.equal((await laptop.get('/me')).json.userId, null)
    assert.equal((await phone.get('/me')).json.userId, 42)
    assert.equal((await stranger.get('/me')).json.userId, 7)
  } finally {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

test('logout destroys the session', async () => {
  const store = new CoatcheckStore()
  await withServer(store, {}, async (base) => {
    const user = new Client(base)
    const { id } = (await user.post('/login', { user: 'dan' })).json
    await user.post('/logout')
    assert.equal(await store.get(id), null)
    assert.equal((await user.get('/me')).json.user, null)
  })
})

test('a tampered cookie gets a fresh anonymous session', async () => {
  const store = new CoatcheckStore()
  await withServer(store, {}, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'erin' })
    const cookie = user.cookies.get('connect.sid')
    const tampered = new Client(base)
    tampered.cookies.set('connect.sid', cookie.slice(0, -3) + (cookie.endsWith('A') ? 'BBB' : 'AAA'))
    const me = (await tampered.get('/me')).json
    assert.equal(me.user, null)
    const forged = new Client(base)
    const sid = decodeURIComponent(cookie).slice(2).split('.')[0]
    forged.cookies.set('connect.sid', `s%3A${sid}.forgedsignature`)
    assert.equal((await forged.get('/me')).json.user, null)
  })
})

test('cookies of every bad kind reach no session and leave the real one as it was', async () => {
  const store = new CoatcheckStore()
  await withServer(store, {}, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'erin' })
    await user.post('/cart', { item: 'tea' })
    const real = user.cookies.get('connect.sid')
    const before = await store.all()
    for (const [what, cookie] of badCookies('connect.sid', real)) {
      const { status, json } = await rawGet(base, '/me', cookie)
      // Node's HTTP parser answers a NUL in a header itself with 400; everything else reaches
      // express-session, which finds no session for it.
      if (what === 'NUL byte') assert.equal(status, 400, what)
      else {
        assert.equal(status, 200, what)
        assert.deepEqual([json.user, json.cart], [null, null], what)
      }
    }
    assert.deepEqual(await store.all(), before)
    assert.deepEqual((await user.get('/me')).json.user, 'erin')
    assert.deepEqual((await user.get('/me')).json.cart, 'tea')
  })
})

test('a short maxAge expires the session', async () => {
  const store = new CoatcheckStore()
  await withServer(store, { maxAge: 300 }, async (base) => {
    const user = new Client(base)
    const { id } = (await user.post('/login', { user: 'fay' })).json
    assert.equal((await user.get('/me')).json.user, 'fay')
    await sleep(450)
    assert.equal(await store.get(id), null)
    assert.equal((await user.get('/me')).json.user, null)
  })
})
