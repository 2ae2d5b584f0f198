'use strict'

// Shared pieces of the Node benchmarks: the four stores, a real redis-server on a free
// 127.0.0.1 port (started here, stopped by PID), and small measuring helpers.

const net = require('node:net')
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
    default:
      throw new Error(`unknown store ${name}`)
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
