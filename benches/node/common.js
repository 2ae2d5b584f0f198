'use strict'

// Shared pieces of the Node benchmarks: the four stores, a real redis-server on a free
// 127.0.0.1 port (started here, stopped by PID), and small measuring helpers.

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

function mib(bytes) {
  return (bytes / 1024 / 1024).toFixed(1)
}

module.exports = { STORES, startRedis, makeStore, call, sessionOf, freePort, mib }
