'use strict'

// The express-session Store contract, one behaviour per test.

const test = require('node:test')
const assert = require('node:assert/strict')
const { setTimeout: sleep } = require('node:timers/promises')
const session = require('express-session')
const { CoatcheckStore, generateId } = require('..')

const inMinutes = (m) => new Date(Date.now() + m * 60_000)
const sess = (extra = {}, expires = inMinutes(10)) => ({
  cookie: { originalMaxAge: 600_000, expires: expires.toISOString(), httpOnly: true, path: '/' },
  ...extra,
})
const callback = (fn) => new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))))

test('is a real express-session Store', () => {
  const store = new CoatcheckStore()
  assert.ok(store instanceof session.Store)
  for (const m of ['get', 'set', 'destroy', 'touch', 'all', 'length', 'clear', 'ids', 'regenerate', 'load', 'createSession']) {
    assert.equal(typeof store[m], 'function', m)
  }
})

test('an ES module imports every name by name, and the default', async () => {
  const { pathToFileURL } = require('node:url')
  const index = pathToFileURL(require.resolve('..')).href
  const esm = await import(index)
  const { CoatcheckStore: Store, generateId: generate, coatcheck, default: byDefault } = esm
  assert.equal(Store, CoatcheckStore)
  assert.equal(generate, generateId)
  assert.equal(typeof coatcheck, 'function')
  assert.equal(byDefault, coatcheck)
})

test('an inspected session shows neither its id nor its stored text', async () => {
  const { inspect } = require('node:util')
  const store = new CoatcheckStore()
  const sid = generateId()
  await store.set(sid, sess({ user: 'ann' }))
  const shown = inspect(await store.get(sid), { depth: Infinity })
  assert.ok(shown.includes("user: 'ann'"), shown)
  assert.ok(!shown.includes(sid), shown)
  assert.ok(!shown.includes('"user"'), shown) // the stored JSON text
})

test('set then get returns the session', async () => {
  const store = new CoatcheckStore()
  await store.set('sid-1', sess({ user: 'ada', n: 3 }))
  const got = await store.get('sid-1')
  assert.equal(got.user, 'ada')
  assert.equal(got.n, 3)
})

test('a missing session is null, not an error', async () => {
  const store = new CoatcheckStore()
  assert.equal(await store.get('nobody'), null)
  assert.deepEqual(await callback((cb) => store.get('nobody', cb)), null)
})

test('callbacks are never called synchronously, and keep call order', async () => {
  const store = new CoatcheckStore()
  const order = []
  let returned = false
  await new Promise((resolve) => {
    store.set('a', sess(), () => {
      assert.ok(returned, 'callback ran before set returned')
      order.push('set')
    })
    store.get('a', () => order.push('get'))
    store.destroy('a', () => order.push('destroy'))
    store.length((err, n) => {
      order.push(`length=${n}`)
      resolve()
    })
    returned = true
  })
  assert.deepEqual(order, ['set', 'get', 'destroy', 'length=0'])
})

test('every method returns a Promise when no callback is given', async () => {
  const store = new CoatcheckStore()
  for (const p of [store.set('p', sess()), store.get('p'), store.touch('p', sess()), store.all(), store.length(), store.ids(), store.destroy('p'), store.clear()]) {
    assert.ok(p instanceof Promise)
    await p
  }
})

test('a session expires at cookie.expires', async () => {
  const store = new CoatcheckStore()
  await store.set('short', sess({}, new Date(Date.now() + 1000)))
  assert.notEqual(await store.get('short'), null)
  await sleep(1200)
  assert.equal(await store.get('short'), null)
})

test('cookie.expires as a Date works like an ISO string', async () => {
  const store = new CoatcheckStore()
  const s = sess()
  s.cookie.expires = new Date(Date.now() + 1000)
  await store.set('date', s)
  assert.notEqual(await store.get('date'), null)
  await sleep(1200)
  assert.equal(await store.get('date'), null)
})

test('a cookie that already expired destroys the session', async () => {
  const store = new CoatcheckStore()
  await store.set('gone', sess({ v: 1 }))
  await store.set('gone', sess({ v: 2 }, new Date(Date.now() - 1000)))
  assert.equal(await store.get('gone'), null)
})

test('without cookie.expires the ttl option applies (seconds)', async () => {
  const store = new CoatcheckStore({ ttl: 1 })
  await store.set('browser-session', { cookie: { originalMaxAge: null, expires: null } })
  assert.notEqual(await store.get('browser-session'), null)
  await sleep(1200)
  assert.equal(await store.get('browser-session'), null)
})

test('ttl may be a function of the session', async () => {
  const store = new CoatcheckStore({ ttl: (s) => (s.short ? 0.1 : 60) })
  await store.set('s', { short: true, cookie: {} })
  await store.set('l', { short: false, cookie: {} })
  await sleep(200)
  assert.equal(await store.get('s'), null)
  assert.notEqual(await store.get('l'), null)
})

test('a ttl function decides over cookie.expires, as in connect-redis', async () => {
  // "Remember me": a long life for some sessions whatever the cookie's maxAge says.
  const store = new CoatcheckStore({ ttl: (s) => (s.remember ? 3600 : 0.1) })
  const tenSeconds = new Date(Date.now() + 10_000)
  await store.set('remembered', sess({ remember: true }, tenSeconds))
  await store.set('anonymous', sess({ remember: false }, tenSeconds))
  await sleep(200)
  assert.equal(await store.get('anonymous'), null)
  const left = Date.parse((await store.get('remembered')).cookie.expires) - Date.now()
  assert.ok(left > 3_500_000, `${left} ms left`)
})

test('a session loaded from one store and set in another is stored there (a copying script)', async () => {
  const from = new CoatcheckStore()
  const to = new CoatcheckStore()
  await from.set('moved', sess({ user: 'ann' }))
  await to.set('moved', await from.get('moved'))
  assert.equal((await to.get('moved')).user, 'ann')
  // Stores of one name share their sessions: a save there is still a save over what was loaded.
  const a = new CoatcheckStore({ name: 'loaded-across-instances' })
  const b = new CoatcheckStore({ name: 'loaded-across-instances' })
  await a.set('shared', sess({ n: 0 }))
  const loaded = await a.get('shared')
  await a.destroy('shared')
  loaded.n = 1
  await b.set('shared', loaded)
  assert.equal(await a.get('shared'), null, 'a session destroyed meanwhile stays destroyed')
})

test('a stored session the serializer cannot read is missing, with one warning, not an error on every request', async () => {
  const serializer = {
    stringify: JSON.stringify,
    parse: (text) => {
      if (text.includes('"old-format"')) throw new Error('unknown format')
      return JSON.parse(text)
    },
  }
  const store = new CoatcheckStore({ serializer })
  await store.set('unreadable', sess({ 'old-format': true }))
  await store.set('readable', sess({ user: 'ann' }))
  const warnings = []
  const onWarning = (w) => warnings.push(w)
  process.on('warning', onWarning)
  try {
    assert.equal(await store.get('unreadable'), null)
    assert.equal(await store.get('unreadable'), null)
    assert.equal((await store.get('readable')).user, 'ann')
    await new Promise((r) => setImmediate(r))
  } finally {
    process.off('warning', onWarning)
  }
  assert.equal(warnings.length, 1)
  assert.equal(warnings[0].code, 'COATCHECK_UNREADABLE_SESSION')
  assert.match(warnings[0].message, /unknown format/)
  // all() lists the readable ones.
  assert.deepEqual((await store.all()).map((s) => s.id), ['readable'])
  // A save over a session that another request meanwhile stored unreadably writes this
  // request's session whole (a merge cannot read the other), rather than failing.
  const loaded = await store.get('readable')
  await store.set('readable', sess({ 'old-format': true }))
  loaded.cart = ['apple']
  await store.set('readable', loaded)
  const after = await store.get('readable')
  assert.equal(after.user, 'ann')
  assert.deepEqual(after.cart, ['apple'])
  // A serializer whose parse is asynchronous is a setup error, said as one; a parse that
  // rejects does not become an unhandled rejection as well.
  const rejections = []
  const onRejection = (reason) => rejections.push(reason)
  process.on('unhandledRejection', onRejection)
  try {
    const later = new CoatcheckStore({ serializer: { stringify: JSON.stringify, parse: async (t) => JSON.parse(t.slice(1)) } })
    await later.set('p', sess({}))
    await assert.rejects(later.get('p'), { code: 'invalid_config', message: /Promise/ })
    await new Promise((r) => setImmediate(r))
  } finally {
    process.off('unhandledRejection', onRejection)
  }
  assert.deepEqual(rejections, [])
})

test('a cookie with a fixed date and no max age keeps its date through reads (@fastify/session)', async () => {
  const store = new CoatcheckStore()
  const fixed = new Date(Date.now() + 60_000).toISOString()
  await store.set('fixed', { cookie: { originalMaxAge: null, expires: fixed } })
  await sleep(50)
  assert.equal((await store.get('fixed')).cookie.expires, fixed)
})

test('touch extends the expiry without rewriting data, and get shows the moved cookie.expires', async () => {
  const store = new CoatcheckStore()
  await store.set('t', sess({ keep: 'me' }, new Date(Date.now() + 1000)))
  const later = new Date(Date.now() + 60_000)
  await store.touch('t', sess({ keep: 'NOT WRITTEN' }, later))
  await sleep(1200)
  const got = await store.get('t')
  const readAt = Date.now()
  assert.equal(got.keep, 'me')
  // At least what the touch set (the first deadline, 1 s, has passed), at most a full 60 s
  // from the read (a read slides the idle deadline).
  const expires = new Date(got.cookie.expires).getTime()
  assert.ok(expires >= later.getTime() - 100 && expires <= readAt + 60_000 + 100, `${expires - later.getTime()} ms past the touch's`)
})

test('get gives cookie.expires in the form toISOString writes, on every date a lifetime can reach', async () => {
  // The store writes the expiry itself; over TTLs from seconds to 400 years, deadlines land on
  // leap days, the ends of months and years, and the non-leap 2100.
  const store = new CoatcheckStore()
  const day = 86_400_000
  const ttls = [1000, 59_000, 3_600_000]
  for (let t = day; t < 400 * 365.25 * day; t = Math.round(t * 1.07) + 3_601_001) ttls.push(t)
  for (const days of [365 * 73 + 30, 365 * 73 + 59]) ttls.push(days * day - (Date.now() % day)) // around 2100-02-28
  for (const [i, ttl] of ttls.entries()) {
    const before = Date.now()
    await store.set(`exp-${i}`, sess({}, new Date(before + ttl)))
    const got = await store.get(`exp-${i}`)
    const after = Date.now()
    const at = Date.parse(got.cookie.expires)
    assert.equal(got.cookie.expires, new Date(at).toISOString(), `ttl ${ttl}: ${got.cookie.expires}`)
    // The core keeps idle timeouts of 2^31 ms (24.8 days) and more in whole seconds.
    const slack = ttl < 2 ** 31 ? 1 : 1000
    assert.ok(at >= before + ttl - slack && at <= after + ttl + slack, `ttl ${ttl}: ${got.cookie.expires} is ${at - before - ttl} ms off`)
  }
  assert.ok(ttls.length > 100, `${ttls.length} lifetimes`)
})

test('touchAfter skips touches that come too soon', async () => {
  const store = new CoatcheckStore({ touchAfter: 60 })
  await store.set('ta', sess({}, new Date(Date.now() + 1000)))
  await store.touch('ta', sess({}, inMinutes(10)))
  await sleep(1200)
  assert.equal(await store.get('ta'), null, 'the early touch was skipped')
  const eager = new CoatcheckStore()
  await eager.set('tb', sess({}, new Date(Date.now() + 1000)))
  await eager.touch('tb', sess({}, inMinutes(10)))
  await sleep(1200)
  assert.notEqual(await eager.get('tb'), null)
})

test('disableTouch makes touch a no-op', async () => {
  const store = new CoatcheckStore({ disableTouch: true })
  await store.set('d', sess({}, new Date(Date.now() + 150)))
  await store.touch('d', sess({}, inMinutes(10)))
  await sleep(250)
  assert.equal(await store.get('d'), null)
})

test('all, length, ids and clear see live sessions', async () => {
  const store = new CoatcheckStore()
  await store.set('x1', sess({ n: 1 }))
  await store.set('x2', sess({ n: 2 }))
  assert.equal(await store.length(), 2)
  assert.deepEqual((await store.ids()).sort(), ['x1', 'x2'])
  const all = await store.all()
  assert.deepEqual(all.map((s) => [s.id, s.n]).sort(), [['x1', 1], ['x2', 2]])
  await store.clear()
  assert.equal(await store.length(), 0)
  assert.deepEqual(await store.all(), [])
})

test('destroy removes the session', async () => {
  const store = new CoatcheckStore()
  await store.set('del', sess())
  await store.destroy('del')
  assert.equal(await store.get('del'), null)
  await store.destroy('del') // destroying twice is fine
})

test('a custom serializer is used both ways', async () => {
  const calls = []
  const serializer = {
    stringify: (s) => (calls.push('stringify'), `v1:${JSON.stringify(s)}`),
    parse: (text) => (calls.push('parse'), JSON.parse(text.slice(3))),
  }
  const store = new CoatcheckStore({ serializer })
  await store.set('ser', sess({ a: 1 }))
  assert.equal((await store.get('ser')).a, 1)
  assert.deepEqual(calls, ['stringify', 'parse'])
})

test('a session value of any text comes back as it was stored, a lone surrogate as U+FFFD', async () => {
  // A serializer that writes raw text, so that the characters themselves cross into the store:
  // 2-byte (é), 3-byte (€, the most UTF-8 bytes per UTF-16 unit) and 4-byte (🧥) characters,
  // NUL, long runs of each, and a lone surrogate, which has no UTF-8 form.
  const serializer = { stringify: (s) => s.text, parse: (text) => ({ text }) }
  const store = new CoatcheckStore({ serializer })
  const texts = ['plain', 'zoë 🧥 €', '€'.repeat(5000), '🧥'.repeat(3000), 'nul\0inside', 'é'.repeat(70_000), '']
  for (const [i, text] of texts.entries()) {
    await store.set(`text-${i}`, { text, cookie: {} })
    assert.equal((await store.get(`text-${i}`)).text, text, `value ${i}`)
  }
  await store.set('surrogate', { text: 'a\uD800b', cookie: {} })
  assert.equal((await store.get('surrogate')).text, 'a\uFFFDb')
})

test('bad input reaches the callback as an Error with a code and changes nothing', async () => {
  const store = new CoatcheckStore({ maxSessionBytes: 512 })
  await store.set('keep', sess({ v: 'original' }))
  const circular = sess()
  circular.self = circular
  const cases = [
    ['get', (cb) => store.get(42, cb), 'invalid_id'],
    ['set non-string sid', (cb) => store.set({}, sess(), cb), 'invalid_id'],
    ['set bad sid text', (cb) => store.set('has space', sess(), cb), 'invalid_id'],
    ['set empty sid', (cb) => store.set('', sess(), cb), 'invalid_id'],
    ['set circular', (cb) => store.set('keep', circular, cb), 'invalid_argument'],
    ['set too large', (cb) => store.set('keep', sess({ big: 'x'.repeat(600) }), cb), 'too_large'],
    ['touch', (cb) => store.touch(null, sess(), cb), 'invalid_id'],
    ['destroy', (cb) => store.destroy(undefined, cb), 'invalid_id'],
    ['setOwner object', (cb) => store.setOwner('keep', { id: 7 }, cb), 'invalid_argument'],
    ['setOwner NaN', (cb) => store.setOwner('keep', NaN, cb), 'invalid_argument'],
    ['setOwner empty', (cb) => store.setOwner('keep', '', cb), 'invalid_argument'],
    ['sessionsOf', (cb) => store.sessionsOf(null, cb), 'invalid_argument'],
    ['sessionsOf boolean', (cb) => store.sessionsOf(true, cb), 'invalid_argument'],
    ['destroyAllForOwner symbol', (cb) => store.destroyAllForOwner(Symbol('u'), cb), 'invalid_argument'],
    ['destroyAllForOwner', (cb) => store.destroyAllForOwner('u', 'bad sid', cb), 'invalid_id'],
    ['regenerateKeepingData', (cb) => store.regenerateKeepingData({ sessionID: 5, session: {} }, cb), 'invalid_id'],
    ['touch non-finite ttl', (cb) => new CoatcheckStore({ ttl: () => NaN }).touch('keep', {}, cb), 'invalid_argument'],
    ['get empty sid', (cb) => store.get('', cb), 'invalid_id'],
    ['get null', (cb) => store.get(null, cb), 'invalid_id'],
    ['set null sid', (cb) => store.set(null, sess(), cb), 'invalid_id'],
    ['get 256-char sid', (cb) => store.get('a'.repeat(256), cb), 'invalid_id'],
    ['set 256-char sid', (cb) => store.set('a'.repeat(256), sess(), cb), 'invalid_id'],
    ['get non-ASCII sid', (cb) => store.get('kéep', cb), 'invalid_id'],
    ['set non-ASCII sid', (cb) => store.set('kéep', sess(), cb), 'invalid_id'],
    ['get lone surrogate', (cb) => store.get('keep\uD800', cb), 'invalid_id'],
    ['get NUL sid', (cb) => store.get('ke\0ep', cb), 'invalid_id'],
    ['set NUL sid', (cb) => store.set('ke\0ep', sess(), cb), 'invalid_id'],
    ['destroy 256-char sid', (cb) => store.destroy('a'.repeat(256), cb), 'invalid_id'],
    ['touch NUL sid', (cb) => store.touch('ke\0ep', sess(), cb), 'invalid_id'],
    ['setOwner 1025-char owner', (cb) => store.setOwner('keep', 'o'.repeat(1025), cb), 'invalid_argument'],
    ['set lone surrogate', (cb) => store.set('keep\uD800', sess(), cb), 'invalid_id'],
    ...['', 'a'.repeat(256), 'kéep', 'keep\uD800', 'ke\0ep'].flatMap((sid) => [
      [`touch ${JSON.stringify(sid).slice(0, 12)}`, (cb) => store.touch(sid, sess(), cb), 'invalid_id'],
      [`destroy ${JSON.stringify(sid).slice(0, 12)}`, (cb) => store.destroy(sid, cb), 'invalid_id'],
      [`regenerateKeepingData ${JSON.stringify(sid).slice(0, 12)}`, (cb) => store.regenerateKeepingData({ sessionID: sid, session: {} }, cb), 'invalid_id'],
    ]),
  ]
  for (const [what, call, code] of cases) {
    const err = await new Promise((resolve) => call((e) => resolve(e)))
    assert.ok(err instanceof Error, what)
    assert.equal(err.code, code, `${what}: ${err.message}`)
    await assert.rejects(new Promise((resolve, reject) => call((e) => (e ? reject(e) : resolve()))), { code })
  }
  assert.equal((await store.get('keep')).v, 'original')
  assert.equal(await store.length(), 1)
})

test('owners are any text up to 1024 bytes: non-ASCII and NUL included', async () => {
  const store = new CoatcheckStore()
  // A lone surrogate reaches the store as U+FFFD, the same way on every call.
  for (const [sid, owner] of [['s1', 'zoë 🧥'], ['s2', 'nul\0inside'], ['s3', 'o'.repeat(1024)], ['s4', 'user\uD800']]) {
    await store.set(sid, sess())
    await store.setOwner(sid, owner)
    assert.deepEqual(await store.sessionsOf(owner), [sid])
  }
  assert.equal(await store.destroyAllForOwner('nul\0inside'), 1)
  assert.equal(await store.get('s2'), null)
  assert.notEqual(await store.get('s1'), null)
})

test('a full store refuses nothing but evicts never-read sessions first', async () => {
  const store = new CoatcheckStore({ maxSessions: 10 })
  for (let i = 0; i < 10; i++) await store.set(`active-${i}`, sess())
  for (let i = 0; i < 10; i++) assert.notEqual(await store.get(`active-${i}`), null)
  for (let i = 0; i < 100; i++) await store.set(`bot-${i}`, sess())
  let survivors = 0
  for (let i = 0; i < 10; i++) if (await store.get(`active-${i}`)) survivors++
  assert.ok(survivors >= 9, `active sessions pushed out: ${survivors}/10 left`)
  assert.equal(await store.length(), 10)
})

test('invalid options throw an Error with code invalid_config', () => {
  for (const options of [{ ttl: -1 }, { maxSessions: 0 }, { maxBytes: 1.5 }, { touchAfter: 'x' }, { serializer: {} }, { name: '' }, { shards: 3 }, { shards: 2 ** 32 + 16 }, { absoluteTimeout: 0 }]) {
    assert.throws(() => new CoatcheckStore(options), { code: 'invalid_config' }, JSON.stringify(options))
  }
})

test('an unknown option is refused, and connect-redis options say what takes their place', () => {
  assert.throws(() => new CoatcheckStore({ maxSesions: 10 }), { code: 'invalid_config', message: /unknown option "maxSesions"/ })
  // Ignored, `client` would leave sessions in one process: lost across a cluster's workers.
  assert.throws(() => new CoatcheckStore({ client: {}, prefix: 'sess:' }), { code: 'invalid_config', message: /redisUrl/ })
  assert.throws(() => new CoatcheckStore({ prefix: 'sess:' }), { code: 'invalid_config', message: /redisKeyPrefix/ })
  // An option given as undefined (a config object spread in) is no option at all.
  assert.equal(new CoatcheckStore({ client: undefined, redisUrl: undefined }).shared, false)
})

test('absoluteTimeout caps the life of a session whatever the activity', async () => {
  const store = new CoatcheckStore({ absoluteTimeout: 1.5 })
  const setAt = performance.now()
  await store.set('abs', sess())
  const setDone = performance.now()
  for (let i = 0; i < 3; i++) {
    await sleep(300)
    const since = performance.now() - setAt
    await store.touch('abs', sess())
    const read = await store.get('abs')
    // Alive while inside its absolute lifetime (a stalled machine may have passed it).
    if (since < 1400) assert.notEqual(read, null, `gone ${since} ms after the set`)
  }
  // Gone once its lifetime has passed, counted from when the set had surely happened.
  await sleep(Math.max(0, 1600 - (performance.now() - setDone)))
  assert.equal(await store.get('abs'), null)
})

test('owner index: sessionsOf and destroyAllForOwner keep the current session', async () => {
  const store = new CoatcheckStore({ ownerOf: (s) => s.userId })
  await store.set('phone', sess({ userId: 'u1' }))
  await store.set('laptop', sess({ userId: 'u1' }))
  await store.set('tablet', sess({ userId: 'u1' }))
  await store.set('other', sess({ userId: 'u2' }))
  await store.set('anon', sess())
  assert.deepEqual((await store.sessionsOf('u1')).sort(), ['laptop', 'phone', 'tablet'])
  assert.equal(await store.destroyAllForOwner('u1', 'laptop'), 2)
  assert.deepEqual(await store.sessionsOf('u1'), ['laptop'])
  assert.notEqual(await store.get('other'), null)
  await store.setOwner('anon', 'u2')
  assert.deepEqual((await store.sessionsOf('u2')).sort(), ['anon', 'other'])
})

test('an owner hook that fails, or gives an owner of the wrong type, fails the save with nothing stored', async () => {
  for (const ownerOf of [() => { throw new Error('no user table') }, () => ({ id: 1 })]) {
    const store = new CoatcheckStore({ ownerOf })
    await assert.rejects(store.set('new', sess({ userId: 'u1' })), { code: 'invalid_argument' })
    assert.equal(await store.get('new'), null)
  }
  // A session loaded and saved again: the stored one stays as it was.
  let fail = false
  const store = new CoatcheckStore({ ownerOf: (s) => { if (fail) throw new Error('no user table'); return s.userId } })
  await store.set('loaded', sess({ userId: 'u1', n: 1 }))
  const loaded = await store.get('loaded')
  loaded.n = 2
  fail = true
  await assert.rejects(store.set('loaded', loaded), { code: 'invalid_argument' })
  assert.equal((await store.get('loaded')).n, 1)
})

test('numeric and bigint owners are the same owner as their decimal text', async () => {
  const store = new CoatcheckStore({ ownerOf: (s) => s.userId })
  await store.set('phone', sess({ userId: 42 }))
  await store.set('laptop', sess({ userId: 42n.toString() }))
  await store.set('tablet', sess())
  await store.setOwner('tablet', 42n)
  await store.set('other', sess({ userId: 7 }))
  for (const owner of [42, 42n, '42']) {
    assert.deepEqual((await store.sessionsOf(owner)).sort(), ['laptop', 'phone', 'tablet'])
  }
  assert.equal(await store.destroyAllForOwner(42, 'phone'), 2)
  assert.deepEqual(await store.sessionsOf(42n), ['phone'])
  assert.deepEqual(await store.sessionsOf(7), ['other'])
})

test('stats count what happened', async () => {
  const store = new CoatcheckStore()
  await store.set('s1', sess())
  await store.get('s1')
  await store.get('missing')
  const stats = store.stats()
  assert.equal(stats.sessions, 1)
  assert.equal(stats.hits, 1)
  assert.equal(stats.misses, 1)
  assert.equal(stats.inserts, 1)
})

test('generateId gives distinct 32-character url-safe ids', () => {
  const ids = new Set(Array.from({ length: 1000 }, () => generateId()))
  assert.equal(ids.size, 1000)
  for (const id of ids) assert.match(id, /^[A-Za-z0-9_-]{32}$/)
  assert.match(CoatcheckStore.generateId(), /^[A-Za-z0-9_-]{32}$/)
})

test('stores with the same name share a table; other options under that name are refused', async () => {
  const a = new CoatcheckStore({ name: 'shared-in-process', ttl: 600 })
  const b = new CoatcheckStore({ name: 'shared-in-process', ttl: 600 })
  await a.set('one', sess({ from: 'a' }))
  assert.equal((await b.get('one')).from, 'a')
  assert.throws(() => new CoatcheckStore({ name: 'shared-in-process', ttl: 5 }), { code: 'invalid_config' })
  // An option given at its default is the option left out.
  const d = new CoatcheckStore({ name: 'shared-in-process', ttl: 600, maxSessionBytes: 1024 * 1024 })
  assert.equal((await d.get('one')).from, 'a')
  const c = new CoatcheckStore()
  assert.equal(await c.get('one'), null)
  // Another secret is another store: it would have signed with the first one's.
  new CoatcheckStore({ name: 'signed-in-process', secret: 'first secret' })
  assert.throws(() => new CoatcheckStore({ name: 'signed-in-process', secret: 'other secret' }), { code: 'invalid_config' })
  assert.doesNotThrow(() => new CoatcheckStore({ name: 'signed-in-process', secret: ['first secret'] }))
})
