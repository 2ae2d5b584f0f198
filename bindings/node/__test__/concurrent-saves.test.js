'use strict'

// Requests of one session that run at once, and sessions revoked while a request is in
// flight, through real Express and Fastify servers over HTTP on 127.0.0.1.

const test = require('node:test')
const assert = require('node:assert/strict')
const { setTimeout: sleep } = require('node:timers/promises')
const express = require('express')
const session = require('express-session')
const Fastify = require('fastify')
const { CoatcheckStore, generateId } = require('..')
const { Client, withHttp, holdInFlight } = require('./helpers')

const CONCURRENT = 20

// Every request waits on `gate` after loading the session and before changing it, so all of
// them load the same version and save over each other.
function barrier(count) {
  let arrived = 0
  let open
  const opened = new Promise((resolve) => (open = resolve))
  return async () => {
    arrived += 1
    if (arrived === count) open()
    await Promise.race([opened, sleep(5000)])
  }
}

async function withExpress(store, routes, body) {
  const app = express()
  app.use(express.json())
  app.use(
    session({
      secret: 'keyboard cat',
      store,
      genid: generateId,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60_000 },
    }),
  )
  app.post('/login', (req, res) => {
    req.session.user = req.body.user
    res.json({ id: req.sessionID })
  })
  app.get('/session', (req, res) => res.json({ ...req.session, cookie: undefined }))
  app.post('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.json({ ok: true }))))
  routes(app)
  await withHttp(app, body)
}

// A second client with the same session cookie: another tab of the same browser.
function tabOf(client) {
  const tab = new Client(client.base)
  tab.cookies = new Map(client.cookies)
  return tab
}

test('express: twenty requests of one session that each add a key keep all twenty keys', async () => {
  const arrive = barrier(CONCURRENT)
  const routes = (app) =>
    app.post('/add/:key', async (req, res) => {
      await arrive()
      req.session[req.params.key] = Number(req.params.key)
      res.json({ ok: true })
    })
  await withExpress(new CoatcheckStore(), routes, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'ada' })
    const tabs = Array.from({ length: CONCURRENT }, () => tabOf(user))
    await Promise.all(tabs.map((tab, i) => tab.post(`/add/${i}`)))
    const stored = (await user.get('/session')).json
    for (let i = 0; i < CONCURRENT; i++) assert.equal(stored[i], i, `key ${i} was lost`)
    assert.equal(stored.user, 'ada', 'a key nobody changed keeps its value')
  })
})

test('express: concurrent changes to different keys survive and a removed key stays removed', async () => {
  const arrive = barrier(2)
  const routes = (app) => {
    app.post('/seed', (req, res) => {
      Object.assign(req.session, { theme: 'light', cart: ['tea'], banner: 'welcome' })
      res.json({ ok: true })
    })
    app.post('/theme', async (req, res) => {
      await arrive()
      req.session.theme = 'dark'
      delete req.session.banner
      res.json({ ok: true })
    })
    app.post('/cart', async (req, res) => {
      await arrive()
      req.session.cart.push('jam')
      await sleep(20) // save second
      res.json({ ok: true })
    })
  }
  await withExpress(new CoatcheckStore(), routes, async (base) => {
    const user = new Client(base)
    await user.post('/seed')
    await Promise.all([tabOf(user).post('/theme'), tabOf(user).post('/cart')])
    const stored = (await user.get('/session')).json
    assert.equal(stored.theme, 'dark')
    assert.deepEqual(stored.cart, ['tea', 'jam'])
    assert.equal('banner' in stored, false)
  })
})

test('express: when two requests change the same key the last one to save wins', async () => {
  const arrive = barrier(2)
  const routes = (app) =>
    app.post('/color/:color/:delay', async (req, res) => {
      await arrive()
      await sleep(Number(req.params.delay))
      req.session.color = req.params.color
      res.json({ ok: true })
    })
  await withExpress(new CoatcheckStore(), routes, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'bo' })
    await Promise.all([tabOf(user).post('/color/red/0'), tabOf(user).post('/color/blue/50')])
    assert.equal((await user.get('/session')).json.color, 'blue')
  })
})

test('express: a session logged out while a request is in flight is not stored again', async () => {
  const slowRequest = holdInFlight()
  const routes = (app) =>
    app.post('/slow', async (req, res) => {
      slowRequest.arrived()
      await slowRequest.held
      req.session.lastPage = '/slow'
      res.json({ ok: true })
    })
  const store = new CoatcheckStore()
  await withExpress(store, routes, async (base) => {
    const user = new Client(base)
    const { id } = (await user.post('/login', { user: 'cy' })).json
    const slow = tabOf(user).post('/slow')
    await slowRequest.loaded
    await tabOf(user).post('/logout')
    slowRequest.release()
    const answer = await slow
    assert.equal(answer.status, 200, 'the request in flight completes without an error')
    assert.equal(await store.get(id), null, 'the logged-out session stays gone')
    assert.equal(await store.length(), 0, 'and is not re-created under another id')
    assert.equal((await user.get('/session')).json.user, undefined)
  })
})

test('express: "log out everywhere" is final for requests in flight on the other devices', async () => {
  const slowRequest = holdInFlight()
  const routes = (app) => {
    app.post('/slow', async (req, res) => {
      slowRequest.arrived()
      await slowRequest.held
      req.session.seen = true
      res.json({ ok: true })
    })
    app.post('/logout-others', async (req, res) => {
      const n = await req.sessionStore.destroyAllForOwner(req.session.user, req.sessionID)
      res.json({ destroyed: n })
    })
    app.get('/devices', async (req, res) => res.json(await req.sessionStore.sessionsOf(req.session.user)))
  }
  const store = new CoatcheckStore({ ownerOf: (s) => s.user })
  await withExpress(store, routes, async (base) => {
    const laptop = new Client(base)
    const phone = new Client(base)
    const laptopId = (await laptop.post('/login', { user: 7 })).json.id
    const phoneId = (await phone.post('/login', { user: 7 })).json.id
    assert.deepEqual((await laptop.get('/devices')).json, [laptopId, phoneId].sort())
    const slow = phone.post('/slow')
    await slowRequest.loaded
    assert.equal((await laptop.post('/logout-others')).json.destroyed, 1)
    slowRequest.release()
    await slow
    assert.equal(await store.get(phoneId), null)
    assert.deepEqual((await laptop.get('/devices')).json, [laptopId])
  })
})

test('express: an unchanged session saved with resave costs a touch, not a write', async () => {
  const store = new CoatcheckStore()
  const app = express()
  app.use(session({ secret: 's', store, genid: generateId, resave: true, saveUninitialized: false }))
  app.get('/login', (req, res) => {
    req.session.user = 'di'
    res.end()
  })
  app.get('/read', (req, res) => res.end(String(req.session.user)))
  await withHttp(app, async (base) => {
    const user = new Client(base)
    await user.get('/login')
    const before = store.stats()
    await user.get('/read')
    await user.get('/read')
    const after = store.stats()
    assert.equal(after.updates, before.updates, 'no data write')
  })
})

async function withFastify(store, routes, body) {
  const app = Fastify()
  await app.register(require('@fastify/cookie'))
  await app.register(require('@fastify/session'), {
    secret: 'a secret with minimum length of 32 characters',
    store,
    saveUninitialized: false,
    cookie: { secure: false, maxAge: 60_000 },
  })
  app.post('/login', async (req) => {
    req.session.set('user', req.body.user)
    return { id: req.session.sessionId }
  })
  app.get('/session', async (req) => {
    const { cookie, ...data } = JSON.parse(JSON.stringify(req.session))
    return data
  })
  app.post('/logout', async (req) => {
    await req.session.destroy()
    return { ok: true }
  })
  routes(app)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  try {
    await body(base)
  } finally {
    await app.close()
  }
}

test('fastify: twenty requests of one session that each add a key keep all twenty keys', async () => {
  const arrive = barrier(CONCURRENT)
  const routes = (app) =>
    app.post('/add/:key', async (req) => {
      await arrive()
      req.session.set(req.params.key, Number(req.params.key))
      return { ok: true }
    })
  await withFastify(new CoatcheckStore(), routes, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'ed' })
    await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => tabOf(user).post(`/add/${i}`)))
    const stored = (await user.get('/session')).json
    for (let i = 0; i < CONCURRENT; i++) assert.equal(stored[i], i, `key ${i} was lost`)
    assert.equal(stored.user, 'ed')
    assert.equal(LOADED_KEY in stored, false, 'the load marker never reaches JSON')
  })
})

const LOADED_KEY = '__coatcheckLoaded'

test('fastify: a session logged out while a request is in flight is not stored again', async () => {
  const slowRequest = holdInFlight()
  const routes = (app) =>
    app.post('/slow', async (req) => {
      slowRequest.arrived()
      await slowRequest.held
      req.session.set('lastPage', '/slow')
      return { ok: true }
    })
  const store = new CoatcheckStore()
  await withFastify(store, routes, async (base) => {
    const user = new Client(base)
    const { id } = (await user.post('/login', { user: 'fi' })).json
    const slow = tabOf(user).post('/slow')
    await slowRequest.loaded
    await tabOf(user).post('/logout')
    slowRequest.release()
    assert.equal((await slow).status, 200)
    assert.equal(await store.get(id), null)
    assert.equal(await store.length(), 0)
  })
})

test('the stored value never holds the load marker, with JSON or another serializer', async () => {
  const serializer = { stringify: (v) => JSON.stringify(v, null, 1), parse: JSON.parse }
  for (const store of [new CoatcheckStore(), new CoatcheckStore({ serializer })]) {
    await store.set('sid-marker', { cookie: { maxAge: 60_000 }, n: 1 })
    const loaded = await store.get('sid-marker')
    loaded.n = 2
    await store.set('sid-marker', loaded)
    const [stored] = await store.all()
    assert.equal(stored.n, 2)
    assert.equal(LOADED_KEY in stored, false)
    assert.equal(store.stats().conflicts, 0)
  }
})

test('fastify: rolling refreshes of an unchanged session are touches, not writes', async () => {
  const store = new CoatcheckStore()
  const routes = (app) => app.get('/read', async (req) => ({ user: req.session.get('user') }))
  await withFastify(store, routes, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'gi' })
    const before = store.stats().updates
    for (let i = 0; i < 3; i++) assert.equal((await user.get('/read')).json.user, 'gi')
    assert.equal(store.stats().updates, before, 'no data write for a cookie refresh')
  })
})

test('express: a second save in the same request keeps what another request saved before the first', async () => {
  const arrive = barrier(2)
  const routes = (app) => {
    app.post('/a', async (req, res, next) => {
      await arrive()
      await sleep(30) // saves after /b
      req.session.a = 1
      req.session.save((err) => {
        if (err) return next(err)
        req.session.a2 = 2 // saved again at the end of the request
        res.json({ ok: true })
      })
    })
    app.post('/b', async (req, res) => {
      await arrive()
      req.session.b = 1
      res.json({ ok: true })
    })
  }
  await withExpress(new CoatcheckStore(), routes, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'ha' })
    await Promise.all([tabOf(user).post('/a'), tabOf(user).post('/b')])
    const stored = (await user.get('/session')).json
    assert.deepEqual([stored.a, stored.a2, stored.b, stored.user], [1, 2, 1, 'ha'])
  })
})

test('express: regenerating a session that was destroyed meanwhile does not bring it back under the new id', async () => {
  const slowRequest = holdInFlight()
  const store = new CoatcheckStore({ regenerateKeepsData: true, ownerOf: (s) => s.user })
  const routes = (app) => {
    app.post('/rotate', async (req, res, next) => {
      slowRequest.arrived()
      await slowRequest.held
      req.session.regenerate((err) => (err ? next(err) : res.json({ id: req.sessionID })))
    })
    app.post('/logout-everywhere', async (req, res) => res.json({ n: await store.destroyAllForOwner(req.session.user) }))
  }
  await withExpress(store, routes, async (base) => {
    const user = new Client(base)
    await user.post('/login', { user: 'io' })
    const rotating = tabOf(user).post('/rotate')
    await slowRequest.loaded
    assert.equal((await tabOf(user).post('/logout-everywhere')).json.n, 1)
    slowRequest.release()
    const { id } = (await rotating).json
    assert.equal(await store.get(id), null)
    assert.equal(await store.length(), 0)
    assert.deepEqual(await store.sessionsOf('io'), [])
  })
})
