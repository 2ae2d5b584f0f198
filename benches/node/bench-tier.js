'use strict'

// The shared tier at store level (issue 10): get, set and touch of CoatcheckStore on Redis
// (`redisUrl`) against connect-redis on the same redis-server, in the same run, one call at a
// time and 64 in flight, 200 B sessions. Gets read sessions this process wrote earlier (the
// near cache's steady state: every request reads its session). Also counts the commands Redis
// ran per operation (INFO commandstats before and after each cell), which is what another
// process's load on Redis is made of (commands run inside our Lua scripts count one by one;
// the tier's own round trips are in its counters, printed at the end).
//
// `CONTENDERS=coatcheck+Redis,connect-redis,MemoryStore,parse-only` adds two what-ifs that
// share nothing between processes: express-session's MemoryStore (a JavaScript Map, no
// network, no native call), and a store that holds one serialized session and whose get only
// parses it (`JSON.parse`) and answers on the next tick, the least any store that hands
// express-session a session object of its own must do. Their ratios to connect-redis bound
// what any store can reach through express-session's callback API in this harness.
//
// Run: `make bench-node` (all Node benchmarks) or `node bench-tier.js` in benches/node.

const { startRedis, makeStore, call, sessionOf, commandStats, timeOps } = require('./common')
const { CoatcheckStore } = require('coatcheck')
const session = require('express-session')

const N = Number(process.env.OPS ?? 20_000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const OPS = ['get', 'set', 'touch']
const CONTENDERS = (process.env.CONTENDERS ?? 'coatcheck+Redis,connect-redis').split(',')

// See CONTENDERS above. Not a store: every id reads the same session, writes keep nothing.
class ParseOnlyStore extends session.Store {
  constructor() {
    super()
    this.text = JSON.stringify(sessionOf(200))
  }
  get(sid, cb) {
    process.nextTick(cb, null, JSON.parse(this.text))
  }
  set(sid, sess, cb) {
    process.nextTick(cb)
  }
  touch(sid, sess, cb) {
    process.nextTick(cb)
  }
  destroy(sid, cb) {
    process.nextTick(cb)
  }
}

async function makeContender(name, url, port) {
  switch (name) {
    case 'coatcheck+Redis':
      return { store: new CoatcheckStore({ redisUrl: url }), close: async () => {} }
    case 'parse-only':
      return { store: new ParseOnlyStore(), close: async () => {} }
    default:
      return makeStore(name, { redisPort: port })
  }
}

// Total commands Redis has run, from INFO commandstats.
async function commandsRun(port) {
  return Object.values(await commandStats(port)).reduce((total, calls) => total + calls, 0)
}

async function cell(store, op, inFlight, port) {
  const sess = sessionOf(200)
  const ids = Array.from({ length: N }, (_, i) => `tier-${op}-${inFlight}-${i}`)
  for (const id of ids) await call((cb) => store.set(id, sess, cb))
  if (op === 'get') for (const id of ids) await call((cb) => store.get(id, cb)) // steady state
  const run = (id) => {
    switch (op) {
      case 'get':
        return call((cb) => store.get(id, cb))
      case 'set':
        return call((cb) => store.set(id, sess, cb))
      case 'touch':
        return call((cb) => store.touch(id, sess, cb))
    }
  }
  const before = await commandsRun(port)
  const seconds = await timeOps(ids, inFlight, run)
  const commands = (await commandsRun(port)) - before - 1 // minus this INFO
  for (const id of ids) await call((cb) => store.destroy(id, cb))
  return { opsPerSecond: N / seconds, commandsPerOp: commands / N }
}

async function main() {
  const redis = await startRedis()
  try {
    const url = `redis://127.0.0.1:${redis.port}/0`
    const stores = {}
    for (const name of CONTENDERS) stores[name] = await makeContender(name, url, redis.port)
    const others = CONTENDERS.filter((name) => name !== 'coatcheck+Redis' && name !== 'connect-redis')
    console.log(`store ops/s on one redis-server, ${N} ops per cell, median of ${ROUNDS} rounds (rounds alternate the stores)`)
    const results = {}
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, { store }] of Object.entries(stores)) {
        for (const op of OPS) {
          for (const inFlight of [1, 64]) {
            const key = `${op} x${inFlight}`
            const r = await cell(store, op, inFlight, redis.port)
            ;((results[key] ??= {})[name] ??= []).push(r)
          }
        }
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
    const opsPerSecond = (row, name) => median(row[name].map((r) => r.opsPerSecond))
    console.log(
      ['workload'.padEnd(12), 'coatcheck+Redis'.padStart(16), 'connect-redis'.padStart(14), 'ratio'.padStart(7), 'redis cmds/op ours'.padStart(19), 'theirs'.padStart(7)]
        .concat(others.flatMap((name) => [name.padStart(14), '÷ connect-redis'.padStart(16)]))
        .join(' '),
    )
    for (const [key, row] of Object.entries(results)) {
      const ours = opsPerSecond(row, 'coatcheck+Redis')
      const theirs = opsPerSecond(row, 'connect-redis')
      const oursCmds = median(row['coatcheck+Redis'].map((r) => r.commandsPerOp))
      const theirsCmds = median(row['connect-redis'].map((r) => r.commandsPerOp))
      const whatIfs = others.flatMap((name) => {
        const theirOps = opsPerSecond(row, name)
        return [Math.round(theirOps).toLocaleString('en').padStart(14), `${(theirOps / theirs).toFixed(1)}x`.padStart(16)]
      })
      console.log(
        [key.padEnd(12), Math.round(ours).toLocaleString('en').padStart(16), Math.round(theirs).toLocaleString('en').padStart(14), `${(ours / theirs).toFixed(1)}x`.padStart(7), oursCmds.toFixed(2).padStart(19), theirsCmds.toFixed(2).padStart(7)]
          .concat(whatIfs)
          .join(' '),
      )
    }
    const tier = stores['coatcheck+Redis'].store.stats().tier
    console.log('coatcheck tier counters:', JSON.stringify(tier))
    for (const { close } of Object.values(stores)) await close()
  } finally {
    await redis.stop()
  }
  process.exit(0)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
