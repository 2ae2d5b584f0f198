'use strict'

// The same store, unchanged, behind @fastify/session with Fastify over real HTTP.

const test = require('node:test')
const assert = require('node:assert/strict')
const { setTimeout: sleep } = require('node:timers/promises')
const Fastify = require('fastify')
const { CoatcheckStore } = require('..')
const { Client, rawGet, badCookies } = require('./helpers')

async function server(store, maxAge = 60_000) {
  const app = Fastify()
  await app.register(require('@fastify/cookie'))
  await app.register(require('@fastify/session'), {
    secret: 'a secret with minimum length of 32 characters',
    store,
    saveUninitialized: false,
    cookie: { secure: false, httpOnly: true, sameSite: 'lax', maxAge },
  })
  app.post('/login', async (req) => {
    await req.session.regenerate()
    req.session.set('user', req.body.user)
    return { id: req.session.sessionId }
  })
  app.get('/me', async (req) => ({ user: req.session.get('user') ?? null, id: req.session.sessionId }))
  app.post('/logout', async (req) => {
    await req.session.destroy()
    return { ok: true }
  })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, base }
}

test('fastify: login, next request, logout', async () => {
  const store = new CoatcheckStore()
  const { app, base } = await server(store)
  try {
    const user = new Client(base)
    const { id } = (await user.post('/login', { user: 'gus' })).json
    assert.equal((await user.get('/me')).json.user, 'gus')
    assert.notEqual(await store.get(id), null)
    await user.post('/logout')
    assert.equal(await store.get(id), null)
    assert.equal((await user.get('/me')).json.user, null)
  } finally {
    await app.close()
  }
})

test('fastify: a tampered cookie gets an anonymous session', async () => {
  const { app, base } = await server(new CoatcheckStore())
  try {
    const user = new Client(base)
    await user.post('/login', { user: 'hal' })
    const [name, value] = [...user.cookies][0]
    const tampered = new Client(base)
    tampered.cookies.set(name, value.slice(0, -2) + 'xx')
    assert.equal((await tampered.get('/me')).json.user, null)
  } finally {
    await app.close()
  }
})

test('fastify: cookies of every bad kind reach no session and leave the real one as it was', async () => {
  const store = new CoatcheckStore()
  const { app, base } = await server(store)
  try {
    const user = new Client(base)
    await user.post('/login', { user: 'hal' })
    const [name, real] = [...user.cookies][0]
    const before = await store.all()
    for (const [what, cookie] of badCookies(name, real)) {
      const { status, json } = await rawGet(base, '/me', cookie)
      if (what === 'NUL byte') assert.equal(status, 400, what)
      else {
        assert.equal(status, 200, what)
        assert.equal(json.user, null, what)
      }
    }
    assert.deepEqual(await store.all(), before)
    assert.equal((await user.get('/me')).json.user, 'hal')
  } finally {
    await app.close()
  }
})

test('fastify: a short maxAge expires the session in the store', async () => {
  const store = new CoatcheckStore()
  const { app, base } = await server(store, 300)
  try {
    const user = new Client(base)
    const { id } = (await user.post('/login', { user: 'ivy' })).json
    assert.equal((await user.get('/me')).json.user, 'ivy')
    await sleep(450)
    assert.equal(await store.get(id), null)
  } finally {
    await app.close()
  }
})
