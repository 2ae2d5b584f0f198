'use strict'

// Store-level throughput: set, get, touch, destroy at 200 B and 2 KB, one call at a time
// and 64 in flight, for CoatcheckStore, MemoryStore, memorystore and connect-redis (real
// redis-server). Also: the cost of the three ways to defer a callback.
//
// Run: `make bench-node` (all Node benchmarks) or `node bench-store.js` in benches/node.

const { STORES, startRedis, makeStore, call, sessionOf, timeOps } = require('./common')

const N = Number(process.env.OPS ?? 20_000)
const SIZES = [200, 2048]
const OPS = ['set', 'get', 'touch', 'destroy']

async function measure(store, op, size, inFlight) {
  const sess = sessionOf(size)
  const ids = Array.from({ length: N }, (_, i) => `bench-${size}-${inFlight}-${i}`)
  if (op !== 'set') for (const id of ids) await call((cb) => store.set(id, sess, cb))
  const run = (id) => {
    switch (op) {
      case 'set':
        return call((cb) => store.set(id, sess, cb))
      case 'get':
        return call((cb) => store.get(id, cb))
      case 'touch':
        return call((cb) => store.touch(id, sess, cb))
      case 'destroy':
        return call((cb) => store.destroy(id, cb))
    }
  }
  const seconds = await timeOps(ids, inFlight, run)
  if (op !== 'destroy') for (const id of ids) await call((cb) => store.destroy(id, cb))
  return N / seconds
}

async function deferrals() {
  const rows = []
  for (const [name, defer] of [
    ['process.nextTick', (f) => process.nextTick(f)],
    ['queueMicrotask', (f) => queueMicrotask(f)],
    ['setImmediate', (f) => setImmediate(f)],
  ]) {
    const n = 500_000
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) await new Promise((resolve) => defer(resolve))
    rows.push([name, Number(process.hrtime.bigint() - start) / n])
  }
  return rows
}

async function main() {
  const redis = await startRedis()
  try {
    console.log(`store ops/s, ${N} ops per cell (higher is better); ratio = coatcheck / that store`)
    const results = {}
    for (const name of STORES) {
      const { store, close } = await makeStore(name, { redisPort: redis.port })
      for (const size of SIZES) {
        for (const inFlight of [1, 64]) {
          for (const op of OPS) {
            const key = `${op} ${size}B x${inFlight}`
            ;(results[key] ??= {})[name] = await measure(store, op, size, inFlight)
          }
        }
      }
      await close()
    }
    const header = ['workload'.padEnd(18), ...STORES.map((s) => s.padStart(13)), ...STORES.slice(1).map((s) => `vs ${s}`.padStart(16))]
    console.log(header.join(' '))
    for (const [key, row] of Object.entries(results)) {
      const cells = STORES.map((s) => Math.round(row[s]).toLocaleString('en-US').padStart(13))
      const ratios = STORES.slice(1).map((s) => `${(row.coatcheck / row[s]).toFixed(2)}x`.padStart(16))
      console.log([key.padEnd(18), ...cells, ...ratios].join(' '))
    }
    console.log('\ncallback deferral, ns per deferred call (lower is better)')
    for (const [name, ns] of await deferrals()) console.log(`${name.padEnd(18)} ${ns.toFixed(0).padStart(6)}`)
  } finally {
    redis.stop()
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
