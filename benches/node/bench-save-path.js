'use strict'

// The cost of the no-conflict save path (issue 9): a request's get → change one key → set,
// where the set is checked against the version the get loaded (what express-session and
// @fastify/session do with CoatcheckStore), against the same cycle written as a plain upsert
// (the load marker removed before the set: v1's save, which could lose concurrent updates).
// Rounds alternate between the two so that machine noise hits both alike.
//
// Run: `node bench-save-path.js` in benches/node (part of `make bench-node`).

const { makeStore, call, sessionOf } = require('./common')

const N = Number(process.env.OPS ?? 20_000)
const ROUNDS = Number(process.env.ROUNDS ?? 7)
const SIZES = [200, 2048]

async function cycle(store, ids, versioned) {
  const start = process.hrtime.bigint()
  for (const id of ids) {
    const sess = await call((cb) => store.get(id, cb))
    sess.views = (sess.views ?? 0) + 1
    if (!versioned) delete sess.__coatcheckLoaded
    await call((cb) => store.set(id, sess, cb))
  }
  return Number(process.hrtime.bigint() - start) / N
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]

async function main() {
  const { store, close } = await makeStore('coatcheck', {})
  console.log(`get + set cycles, ${N} sessions, median of ${ROUNDS} alternating rounds (ns per cycle, lower is better)`)
  console.log(['size'.padEnd(6), 'versioned'.padStart(10), 'upsert'.padStart(10), 'cost'.padStart(8)].join(' '))
  for (const size of SIZES) {
    const ids = Array.from({ length: N }, (_, i) => `save-path-${size}-${i}`)
    for (const id of ids) await call((cb) => store.set(id, sessionOf(size), cb))
    const times = { versioned: [], upsert: [] }
    await cycle(store, ids, true) // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      times.versioned.push(await cycle(store, ids, true))
      times.upsert.push(await cycle(store, ids, false))
    }
    const v = median(times.versioned)
    const u = median(times.upsert)
    const cost = ((v / u - 1) * 100).toFixed(1)
    console.log([`${size}B`.padEnd(6), v.toFixed(0).padStart(10), u.toFixed(0).padStart(10), `${cost}%`.padStart(8)].join(' '))
    if (store.stats().conflicts !== 0) throw new Error('a conflict on the no-conflict path')
  }
  await close()
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
