'use strict'

// Sessions shared through Redis (`redisUrl`): between stores, between the workers of a Node
// cluster running Express and Fastify, and when Redis stalls or dies. Each test starts its
// own redis-server.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { CoatcheckStore } = require('..')
const { startRedis, freePort } = require('./redis-server.js')

const CYCLES = Number(process.env.COATCHECK_MULTIWORKER_CYCLES ?? 2000)

test('two stores on one Redis share sessions, versions and revocation', async () => {
  const redis = await startRedis()
  try {
    // A generous timeout (as in every test here not about waiting): a busy machine.
    const a = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 1 })
    const b = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 1 })
    assert.equal(a.shared, true)
    assert.equal(a.stats().tier.connected, true)
    assert.equal(a.stats().tier.toReplay, 0, 'nothing was made while Redis was down')
    assert.equal(new CoatcheckStore().stats().tier, undefined)
    await a.set('sid-1', { cookie: {}, user: 'u1' })
    const loaded = await b.get('sid-1')
    assert.equal(loaded.user, 'u1')
    loaded.cart = [7]
    await b.set('sid-1', loaded)
    let seen
    for (let i = 0; i < 100 && !(seen = await a.get('sid-1'))?.cart; i++) await new Promise((r) => setTimeout(r, 5))
    assert.deepEqual(seen.cart, [7])
    // A save of what A loaded before B's next write merges instead of overwriting.
    const fromA = await a.get('sid-1')
    const fromB = await b.get('sid-1')
    fromA.x = 1
    fromB.y = 2
    await a.set('sid-1', fromA)
    await b.set('sid-1', fromB)
    const merged = await a.get('sid-1')
    for (let i = 0; i < 100 && merged.y === undefined; i++) Object.assign(merged, await a.get('sid-1'))
    assert.equal(merged.x, 1)
    assert.equal(merged.y, 2)
    // Revocation is final across stores: a save of a session destroyed elsewhere stores nothing.
    const stale = await b.get('sid-1')
    await a.destroy('sid-1')
    stale.revived = true
    await b.set('sid-1', stale)
    assert.equal(await a.get('sid-1'), null)
    assert.equal(await b.get('sid-1'), null)
    // So is a save through one store of what another loaded from the same Redis.
    await a.set('sid-2', { cookie: {}, user: 'u2' })
    const loadedByA = await a.get('sid-2')
    await a.destroy('sid-2')
    loadedByA.revived = true
    await b.set('sid-2', loadedByA)
    assert.equal(await b.get('sid-2'), null)
    // Whatever the stores' names, and with the default prefix given or not.
    const c = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 1, redisKeyPrefix: 'coatcheck:', name: 'origin-test' })
    await a.set('sid-3', { cookie: {}, user: 'u3' })
    const alsoLoadedByA = await a.get('sid-3')
    await a.destroy('sid-3')
    await c.set('sid-3', alsoLoadedByA)
    assert.equal(await c.get('sid-3'), null)
    await c.close()
  } finally {
    await redis.stop()
  }
})

test('destroyAllForOwner in one store logs the owner out of the copies another store holds', async () => {
  const redis = await startRedis()
  try {
    const options = { redisUrl: redis.url, redisTimeout: 1, ownerOf: (s) => s.user }
    const a = new CoatcheckStore(options)
    const b = new CoatcheckStore(options)
    await a.set('laptop', { cookie: {}, user: 'ann' })
    await b.set('phone', { cookie: {}, user: 'ann' })
    await a.set('kept', { cookie: {}, user: 'ann' })
    await b.set('bob', { cookie: {}, user: 'bob' })
    for (const sid of ['laptop', 'phone', 'kept']) assert.equal((await b.get(sid)).user, 'ann') // B holds copies
    assert.deepEqual((await b.sessionsOf('ann')).sort(), ['kept', 'laptop', 'phone'])
    assert.equal(await a.destroyAllForOwner('ann', 'kept'), 2)
    const deadline = performance.now() + 1000
    while ((await b.get('laptop')) !== null || (await b.get('phone')) !== null) {
      assert.ok(performance.now() < deadline, 'B still serves a session logged out everywhere')
    }
    assert.equal((await b.get('kept')).user, 'ann')
    assert.equal((await b.get('bob')).user, 'bob')
    assert.deepEqual(await b.sessionsOf('ann'), ['kept'])
  } finally {
    await redis.stop()
  }
})

test('a call that waits on Redis never blocks the main thread, and a stalled Redis is a coded error', async () => {
  const redis = await startRedis()
  try {
    // A timeout long enough that a call blocking the main thread could not go unnoticed.
    const store = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 1, redisStrict: true })
    await store.set('sid-2', { cookie: {}, n: 1 })
    redis.pause() // SIGSTOP: connected, but silent
    const started = performance.now()
    let ticks = 0
    const ticker = setInterval(() => ticks++, 1)
    const pending = store.get('sid-2')
    const returnedAfter = performance.now() - started
    // A write is sent from the main thread and settled from the Redis link thread.
    const writeStarted = performance.now()
    const writing = store.set('sid-2', { cookie: {}, n: 2 }).then(
      () => 'written',
      (error) => error.code,
    )
    const writeReturnedAfter = performance.now() - writeStarted
    const outcome = await pending.then(
      () => 'answered',
      (error) => error.code,
    )
    const written = await writing
    clearInterval(ticker)
    // Waiting for Redis on the main thread would hold it for the whole second.
    assert.ok(returnedAfter < 100, `get() held the main thread for ${returnedAfter} ms`)
    assert.ok(writeReturnedAfter < 100, `set() held the main thread for ${writeReturnedAfter} ms`)
    assert.equal(outcome, 'unavailable')
    assert.equal(written, 'unavailable')
    assert.ok(performance.now() - started < 3000, 'waited far past the timeout')
    assert.ok(ticks >= 10, `the event loop ran only ${ticks} timers while Redis was silent`)
  } finally {
    redis.resume()
    await redis.stop()
  }
})

test('all, length, ids and clear see every store on the Redis, off the main thread', async () => {
  const redis = await startRedis()
  try {
    const a = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 1, secret: ['new secret', 'old secret'] })
    const b = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 1, secret: 'new secret' })
    await a.set('sid-a', { cookie: {}, user: 'ann' })
    await b.set('sid-b', { cookie: {}, user: 'bob' })
    for (const store of [a, b]) {
      const pending = store.length()
      assert.ok(pending instanceof Promise, 'a call that needs Redis settles later')
      assert.equal(await pending, 2)
      assert.deepEqual((await store.ids()).sort(), ['sid-a', 'sid-b'])
      const all = (await store.all()).map((s) => `${s.id}:${s.user}`).sort()
      assert.deepEqual(all, ['sid-a:ann', 'sid-b:bob'])
    }
    assert.equal(b.native.len(), 1, "the local table holds B's own copy only")
    assert.equal((await b.get('sid-a')).user, 'ann')
    await a.clear()
    assert.equal(await b.length(), 0)
    let seen = 'not yet'
    for (let i = 0; i < 200 && seen !== null; i++) {
      seen = await b.get('sid-a')
      if (seen !== null) await new Promise((r) => setTimeout(r, 5))
    }
    assert.equal(seen, null, "B still serves a session A cleared")
    assert.equal(await a.get('sid-b'), null)
    // Without a secret the ids cannot be kept sealed in Redis, so they are not listed.
    const unsealed = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 1 })
    await unsealed.set('sid-c', { cookie: {} })
    assert.equal(await unsealed.length(), 1)
    await assert.rejects(unsealed.ids(), { code: 'invalid_config' })
    await assert.rejects(unsealed.all(), { code: 'invalid_config' })
    // While Redis is away a clear is refused rather than half done.
    const failing = new CoatcheckStore({ redisUrl: redis.url, secret: 's', redisTimeout: 1 })
    await failing.set('sid-d', { cookie: {} })
    await redis.stop()
    let outcome
    for (let i = 0; i < 100 && outcome !== 'unavailable'; i++) {
      outcome = await failing.clear().then(() => 'cleared', (e) => e.code)
      if (outcome !== 'unavailable') await new Promise((r) => setTimeout(r, 20))
    }
    assert.equal(outcome, 'unavailable')
    assert.equal(failing.native.len(), 1, 'nothing local went')
  } finally {
    await redis.stop()
  }
})

test("with redisWhenDown 'fail', a stopped Redis is an 'unavailable' error within the timeout; with the default the local copy serves", async () => {
  const redis = await startRedis()
  try {
    const failing = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 0.05, redisWhenDown: 'fail' })
    const serving = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 0.05 })
    await failing.set('sid-f', { cookie: {}, n: 1 })
    await serving.set('sid-s', { cookie: {}, n: 1 })
    // Each store trusts its copy once Redis has confirmed its own write.
    for (const [store, sid] of [[failing, 'sid-f'], [serving, 'sid-s']]) {
      const deadline = performance.now() + 5000
      while (store.stats().tier.nearHits === 0 && performance.now() < deadline) {
        assert.equal((await store.get(sid)).n, 1)
        await new Promise((r) => setTimeout(r, 10))
      }
    }
    await redis.stop() // SIGKILL: every connection is refused from now on
    // Once the stores have noticed (the link thread reads the closed connection): a call made
    // before may still be answered from a trusted copy.
    for (const store of [failing, serving]) {
      const deadline = performance.now() + 5000
      while (store.stats().tier.connected) {
        assert.ok(performance.now() < deadline, 'the loss of the link was never noticed')
        await new Promise((r) => setTimeout(r, 5))
      }
    }
    const outcome = async (call) => {
      const started = performance.now()
      const result = await call().then(
        (value) => ({ value }),
        (error) => ({ code: error.code }),
      )
      return { ...result, ms: performance.now() - started }
    }
    const calls = {
      get: () => failing.get('sid-f'),
      set: () => failing.set('sid-f', { cookie: {}, n: 2 }),
      touch: () => failing.touch('sid-f', { cookie: {} }),
      destroy: () => failing.destroy('sid-f'),
      'get of an unknown id': () => failing.get('sid-unknown'),
    }
    for (const [name, call] of Object.entries(calls)) {
      const { code, ms } = await outcome(call)
      assert.equal(code, 'unavailable', `${name} under 'fail'`)
      assert.ok(ms < 50 * 3 + 250, `${name} under 'fail' took ${ms} ms`)
    }
    await new Promise((r) => setTimeout(r, 20))
    assert.ok(failing.stats().tier.downMs >= 20, `downMs ${failing.stats().tier.downMs} while down for 20 ms and more`)
    assert.ok(failing.stats().tier.disconnects >= 1)
    const { value, ms } = await outcome(() => serving.get('sid-s'))
    assert.equal(value?.n, 1, "the default policy serves this process's copy")
    assert.ok(ms < 50 * 3 + 250, `get under the default took ${ms} ms`)
    // A store built while Redis is down starts at once, and fails under 'fail'.
    const started = performance.now()
    const late = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 0.05, redisWhenDown: 'fail' })
    const built = performance.now() - started
    assert.ok(built < 500, `the constructor held the main thread for ${built} ms`)
    assert.equal((await outcome(() => late.get('sid-f'))).code, 'unavailable')
  } finally {
    await redis.stop()
  }
})

test("express-session's destroy() without a callback, failing on a silent Redis, is a warning and not an unhandled rejection", async () => {
  const express = require('express')
  const session = require('express-session')
  const { Client, withHttp } = require('./helpers')
  const redis = await startRedis()
  const rejections = []
  const warnings = []
  const onRejection = (reason) => rejections.push(reason)
  const onWarning = (warning) => warnings.push(warning)
  process.on('unhandledRejection', onRejection)
  process.on('warning', onWarning)
  try {
    const store = new CoatcheckStore({ redisUrl: redis.url, redisTimeout: 0.2, redisWhenDown: 'fail' })
    const app = express()
    app.use(session({ secret: 's', store, resave: false, saveUninitialized: false }))
    app.post('/login', (req, res) => {
      req.session.user = 'ann'
      res.end('in')
    })
    app.post('/logout', (req, res) => {
      req.session.destroy() // the common logout: no callback
      res.end('out')
    })
    await withHttp(app, async (base) => {
      const client = new Client(base)
      await client.post('/login')
      redis.pause() // SIGSTOP: connected, but silent
      try {
        assert.equal((await client.post('/logout')).text, 'out')
        const deadline = performance.now() + 3000
        while (warnings.length === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      } finally {
        redis.resume()
      }
    })
    assert.deepEqual(rejections, [])
    assert.equal(warnings.length, 1)
    assert.equal(warnings[0].code, 'unavailable')
  } finally {
    process.off('unhandledRejection', onRejection)
    process.off('warning', onWarning)
    await redis.stop()
  }
})

test("a callback that throws is an uncaught exception on Redis as without it, not an unhandled rejection", async () => {
  const { execFile } = require('node:child_process')
  const redis = await startRedis()
  // In a process of its own: the test runner takes an uncaught exception for a failed test.
  const child = `
    const { CoatcheckStore } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const report = (how) => (e) => { console.log(how + ': ' + e.message); process.exit(0) }
    process.on('uncaughtException', report('uncaught'))
    process.on('unhandledRejection', report('unhandled'))
    const store = new CoatcheckStore(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL, redisTimeout: 1 } : {})
    store.set('sid-1', { cookie: {}, user: 'ann' }, () => { throw new Error('thrown by the callback') })
  `
  const outcome = (env) =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, ['-e', child], { env: { ...process.env, ...env }, timeout: 20000 }, (error, stdout) =>
        error ? reject(error) : resolve(stdout.trim()),
      )
    })
  try {
    assert.equal(await outcome({ REDIS_URL: '' }), 'uncaught: thrown by the callback')
    assert.equal(await outcome({ REDIS_URL: redis.url }), 'uncaught: thrown by the callback')
  } finally {
    await redis.stop()
  }
})

test('a call waiting on Redis keeps the process alive until it settles, and only that long', async () => {
  const { execFile } = require('node:child_process')
  const redis = await startRedis()
  // A process of its own, with nothing else to keep its event loop alive: Redis holds the
  // read of a session this process has no copy of for 300 ms.
  const child = `
    const net = require('node:net')
    const { CoatcheckStore } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const store = new CoatcheckStore({ redisUrl: process.env.REDIS_URL, redisTimeout: 2 })
    const admin = net.connect(Number(process.env.REDIS_PORT), '127.0.0.1', () => admin.write('CLIENT PAUSE 300 WRITE\\r\\n'))
    admin.once('data', () => {
      admin.destroy()
      const start = Date.now()
      store.get('not-in-redis', (err, session) => console.log(JSON.stringify({ err: err?.code ?? null, session, ms: Date.now() - start })))
    })
  `
  try {
    const started = Date.now()
    const stdout = await new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        ['-e', child],
        { env: { ...process.env, REDIS_URL: redis.url, REDIS_PORT: String(redis.port) }, timeout: 20000 },
        (error, out) => (error ? reject(error) : resolve(out.trim())),
      )
    })
    const answer = JSON.parse(stdout)
    assert.deepEqual({ err: answer.err, session: answer.session }, { err: null, session: null })
    assert.ok(answer.ms >= 200, `answered after the pause: ${answer.ms} ms`)
    assert.ok(Date.now() - started < 10000, 'the process ended once nothing was pending')
  } finally {
    await redis.stop()
  }
})

test('redis options are checked', () => {
  assert.throws(() => new CoatcheckStore({ redisUrl: 'redis://127.0.0.1:1', secret: '' }), { code: 'invalid_config' })
  assert.throws(() => new CoatcheckStore({ redisUrl: 'redis://127.0.0.1:1', secret: [] }), { code: 'invalid_config' })
  assert.throws(() => new CoatcheckStore({ redisUrl: 'redis://127.0.0.1:1', secret: [7] }), { code: 'invalid_config' })
  assert.throws(() => new CoatcheckStore({ redisUrl: 'http://example.invalid/' }), { code: 'invalid_config' })
  assert.throws(() => new CoatcheckStore({ redisUrl: 42 }), { code: 'invalid_config' })
  assert.throws(() => new CoatcheckStore({ redisUrl: 'redis://127.0.0.1:1', redisWhenDown: 'later' }), { code: 'invalid_config' })
  assert.throws(() => new CoatcheckStore({ redisUrl: 'redis://127.0.0.1:1', redisTimeout: -1 }), { code: 'invalid_config' })
})

function request(port, method, urlPath, cookie) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, agent: false, headers: cookie ? { cookie } : {}, timeout: 10000 },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }))
      },
    )
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
}

function sessionCookie(headers) {
  for (const line of headers['set-cookie'] ?? []) {
    const pair = line.split(';')[0]
    if (pair.startsWith('connect.sid=') || pair.startsWith('sessionId=')) return pair
  }
  return undefined
}

// Users at once: each runs its cycles one request after another, as a browser does, while the
// others keep the workers busy (one user at a time left the machine half idle).
const CLIENTS = 4

async function cycles(port, n) {
  const counts = { lost: 0, readAfterLogout: 0, serverErrors: 0, workers: 0 }
  const pids = new Set()
  const oneCycle = async (i) => {
    const user = `user-${i}`
    let res = await request(port, 'POST', `/login?user=${user}`)
    counts.serverErrors += res.status >= 500
    let cookie = sessionCookie(res.headers)
    res = await request(port, 'POST', `/write?item=i${i}`, cookie)
    counts.serverErrors += res.status >= 500
    cookie = sessionCookie(res.headers) ?? cookie
    res = await request(port, 'GET', '/read', cookie)
    counts.serverErrors += res.status >= 500
    const seen = res.status === 200 ? JSON.parse(res.body) : {}
    pids.add(seen.pid)
    if (seen.user !== user || JSON.stringify(seen.items) !== JSON.stringify([`i${i}`])) counts.lost++
    res = await request(port, 'POST', '/logout', cookie)
    counts.serverErrors += res.status >= 500
    res = await request(port, 'GET', '/read', cookie)
    counts.serverErrors += res.status >= 500
    if (res.status === 200 && JSON.parse(res.body).user === user) counts.readAfterLogout++
  }
  let next = 0
  const client = async () => {
    while (next < n) await oneCycle(next++)
  }
  await Promise.all(Array.from({ length: CLIENTS }, client))
  counts.workers = pids.size
  return counts
}

async function withCluster(kind, redisUrl, body) {
  const port = await freePort()
  const child = spawn(process.execPath, [path.join(__dirname, 'apps', 'cluster-app.js'), kind, String(port)], {
    // A generous timeout: the test counts lost sessions and revocations on a machine that 4
    // workers, Redis and the client keep busy, where a 50 ms wait can run out.
    env: { ...process.env, COATCHECK_REDIS_URL: redisUrl ?? '', COATCHECK_REDIS_TIMEOUT: '1' },
    // An IPC channel, so the cluster stops if this test process dies; no inherited stderr, so
    // a cluster left behind cannot hold the test runner's pipe open.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('cluster did not start')), 30000)
      child.stdout.on('data', (chunk) => {
        if (String(chunk).includes('ready')) {
          clearTimeout(timer)
          resolve()
        }
      })
      let stderr = ''
      child.stderr.on('data', (chunk) => (stderr += chunk))
      child.once('exit', (code) => reject(new Error(`cluster exited with ${code}: ${stderr}`)))
    })
    return await body(port)
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
    if (child.exitCode === null) child.kill('SIGKILL')
  }
}

for (const kind of ['express', 'fastify']) {
  test(`a cluster of 4 ${kind} workers on Redis loses no session and serves no logged-out one`, { timeout: 600000 }, async () => {
    const redis = await startRedis()
    try {
      const counts = await withCluster(kind, redis.url, (port) => cycles(port, CYCLES))
      console.log(`${kind} cluster (4 workers) on Redis: ${CYCLES} cycles`, counts)
      assert.ok(counts.workers >= 2, JSON.stringify(counts))
      assert.deepEqual({ ...counts, workers: 0 }, { lost: 0, readAfterLogout: 0, serverErrors: 0, workers: 0 })
    } finally {
      await redis.stop()
    }
  })
}

test('without Redis a cluster of 4 workers loses sessions (the loss the shared tier fixes)', { timeout: 120000 }, async () => {
  const n = 100
  const counts = await withCluster('express', undefined, (port) => cycles(port, n))
  console.log(`express cluster (4 workers) without Redis: ${n} cycles`, counts)
  assert.ok(counts.lost > n / 4, JSON.stringify(counts))
})
