'use strict'

// Shared pieces of the Node benchmarks: the four stores, a real redis-server on a free
// 127.0.0.1 port (started here, stopped by PID), and small measuring helpers.

const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const session = require('express-session')
const { CoatcheckStore } = require('coatcheck')
const MemoryStoreFactory = require('memorystore')

const STORES = ['coatcheck', 'MemoryStore', 'memorystore', 'connect-redis']

// The same redis-server harness as the Node tests.
const { freePort, startRedis } = require('../../bindings/node/__test__/redis-server.js')

// Builds a store by name. connect-redis needs a redis port; returns { store, close }.
async function makeStore(name, { redisPort, options = {} } = {}) {
  switch (name) {
    case 'coatcheck':
      return { store: new CoatcheckStore(options), close: async () => {} }
    case 'MemoryStore':
      return { store: new session.MemoryStore(), close: async () => {} }
    case 'memorystore': {
      const MemoryStore = MemoryStoreFactory(session)
      // memorystore prunes expired entries every checkPeriod; one minute, as its README shows.
      const store = new MemoryStore({ checkPeriod: 60_000 })
      return { store, close: async () => store.stopInterval() }
    }
    case 'connect-redis': {
      const { createClient } = require('redis')
      const { RedisStore } = require('connect-redis')
      const client = createClient({ url: `redis://127.0.0.1:${redisPort}` })
      await client.connect()
      return { store: new RedisStore({ client, prefix: 'sess:' }), close: async () => client.quit(), client }
    }
    case 'script-on-main-thread': {
      // Not a store to use: a what-if for the shared tier's design. Sessions are written with
      // the tier's own WRITE script (versioned, as coatcheck writes them), but from Node's main
      // thread through node-redis, the way connect-redis sends its commands, and read with one
      // HGET each, with no near cache and no confirmation round trip. Against connect-redis it
      // shows what the script costs; against coatcheck+redis, what crossing to the link thread
      // and the near cache's protocol cost.
      const { createClient } = require('redis')
      const client = createClient({ url: `redis://127.0.0.1:${redisPort}` })
      await client.connect()
      const sha = await client.scriptLoad(tierScript('WRITE'))
      return { store: new ScriptOnMainThreadStore(client, sha), close: async () => client.quit(), client }
    }
    default:
      throw new Error(`unknown store ${name}`)
  }
}

// The prelude and body of one of the shared tier's Lua scripts, as core/src/tier/scripts.rs
// defines them.
function tierScript(name) {
  const source = fs.readFileSync(path.join(__dirname, '../../core/src/tier/scripts.rs'), 'utf8')
  const prelude = source.match(/const PRELUDE: &str = r"([\s\S]*?)";/)
  const body = source.match(new RegExp(`static ${name}: LazyLock<Script>[\\s\\S]*?r"([\\s\\S]*?)",`))
  if (!prelude || !body) throw new Error(`script ${name} not found in scripts.rs`)
  return prelude[1] + body[1]
}

// See makeStore('script-on-main-thread').
class ScriptOnMainThreadStore extends session.Store {
  constructor(client, writeSha) {
    super()
    this.client = client
    this.writeSha = writeSha
    this.prefix = 'what-if:'
  }
  key(sid) {
    return `${this.prefix}s:${sid}`
  }
  ttlMs(sess) {
    return sess?.cookie?.originalMaxAge ?? 86_400_000
  }
  get(sid, cb) {
    this.client.hGet(this.key(sid), 'd').then((data) => cb(null, data ? JSON.parse(data) : null), cb)
  }
  set(sid, sess, cb) {
    // WRITE's arguments: no precondition, the value, this idle timeout, the default one, no
    // absolute timeout, the prefix, no id sealed for listing.
    const ttl = String(this.ttlMs(sess))
    const args = ['none', '0', JSON.stringify(sess), ttl, ttl, '0', this.prefix, '']
    this.client
      .evalSha(this.writeSha, { keys: [this.key(sid), `${this.prefix}version`], arguments: args })
      .then(() => cb(null), cb)
  }
  touch(sid, sess, cb) {
    this.client.pExpire(this.key(sid), this.ttlMs(sess)).then(() => cb(null), cb)
  }
  destroy(sid, cb) {
    this.client.del(this.key(sid)).then(() => cb(null), cb)
  }
}

const call = (fn) => new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))))

function sessionOf(bytes) {
  const base = { cookie: { originalMaxAge: 3_600_000, expires: new Date(Date.now() + 3_600_000).toISOString(), httpOnly: true, path: '/' } }
  const overhead = JSON.stringify({ ...base, data: '' }).length
  return { ...base, data: 'x'.repeat(Math.max(0, bytes - overhead)) }
}

// One command to redis-server over a fresh connection (no client library, so the count of
// commands Redis ran is not disturbed by a client's own handshake). Resolves to the raw reply.
function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () =>
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`),
    )
    let reply = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk) => {
      reply += chunk
      const bulk = reply.match(/^\$(\d+)\r\n/)
      const complete = bulk ? Buffer.byteLength(reply) >= bulk[0].length + Number(bulk[1]) + 2 : reply.endsWith('\r\n')
      if (!complete) return
      socket.end()
      if (reply.startsWith('-')) reject(new Error(`redis: ${reply.trim()}`))
      else resolve(reply)
    })
    socket.on('error', reject)
  })
}

// Calls per command Redis has run (INFO commandstats), e.g. { get: 12, evalsha: 3 }. Commands
// a Lua script runs count too, each under its own name. Each call adds one INFO.
async function commandStats(port) {
  const text = await redisCommand(port, 'INFO', 'commandstats')
  const calls = {}
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]] = Number(m[2])
  return calls
}

// Seconds to run `run(id)` for every id, `inFlight` calls at a time (1: one after another).
async function timeOps(ids, inFlight, run) {
  const start = process.hrtime.bigint()
  if (inFlight === 1) {
    for (const id of ids) await run(id)
  } else {
    let next = 0
    const worker = async () => {
      while (next < ids.length) await run(ids[next++])
    }
    await Promise.all(Array.from({ length: inFlight }, worker))
  }
  return Number(process.hrtime.bigint() - start) / 1e9
}

function mib(bytes) {
  return (bytes / 1024 / 1024).toFixed(1)
}

module.exports = { STORES, startRedis, makeStore, call, sessionOf, freePort, mib, redisCommand, commandStats, timeOps }
