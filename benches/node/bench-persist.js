'use strict'

// The restart log's cost where Node users meet it (issue 11): CoatcheckStore.set with and
// without `persistPath` (fsync never / interval / always), one call at a time and 64 in
// flight; then an Express app whose every request rewrites its session (express-session,
// /count), with and without the log. Each round runs every mode, in an order that rotates
// from round to round, so a slow minute of the machine hits each alike; the ratio is against
// the same store without a log, in the same run.
//
// Run: `node --expose-gc bench-persist.js` in benches/node (ROUNDS, OPS, DURATION change the
// run); with --expose-gc each round's store is collected (its log closed) before the next,
// though Node may finalize it later.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const readline = require('node:readline')
const { CoatcheckStore } = require('coatcheck')
const { call, sessionOf, timeOps } = require('./common')
const { load } = require('./load')

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const OPS = Number(process.env.OPS ?? 100_000)
const DURATION = Number(process.env.DURATION ?? 5)
const SESSIONS = 10_000
const MODES = ['none', 'never', 'interval', 'always']

const rotated = (list, by) => list.map((_, i) => list[(i + by) % list.length])
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]

// Every round's files live under one directory, emptied when a run starts rather than when it
// ends: a store's log closes (and writes its snapshot) when Node collects it, as late as exit.
const ROOT = path.join(os.tmpdir(), 'coatcheck-bench-persist')

function tempDir() {
  return fs.mkdtempSync(path.join(ROOT, 'round-'))
}

// Sets per second of 200 B sessions over SESSIONS ids, `inFlight` calls at a time, each
// changing the session's counter.
async function storeRound(mode, inFlight) {
  const dir = tempDir()
  const options = mode === 'none' ? {} : { persistPath: path.join(dir, 'sessions'), persistFsync: mode }
  const store = new CoatcheckStore(options)
  const sess = sessionOf(200)
  const ids = Array.from({ length: SESSIONS }, (_, i) => `bench-persist-${i}`)
  for (const id of ids) await call((cb) => store.set(id, sess, cb))
  // `always` waits for the disk in every call: fewer ops keep its cell within seconds.
  const n = mode === 'always' ? Math.min(OPS, 5_000) : OPS
  const run = Array.from({ length: n }, (_, i) => ids[i % SESSIONS])
  // Each write changes a counter in the session, as an app's writes do (the log records the
  // bytes that changed).
  let views = 0
  const seconds = await timeOps(run, inFlight, (id) => {
    sess.views = ++views
    return call((cb) => store.set(id, sess, cb))
  })
  return n / seconds
}

function startServer(persistPath) {
  const args = [require.resolve('./http-server.js'), 'coatcheck', '1000', '0']
  if (persistPath) args.push(persistPath)
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    const timer = setTimeout(() => reject(new Error('server did not start in 60 s')), 60_000)
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer)
      resolve({ child, ...JSON.parse(line) })
    })
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)))
  })
}

async function httpRound(withLog) {
  const dir = tempDir()
  const server = await startServer(withLog ? path.join(dir, 'sessions') : null)
  try {
    await load({ port: server.port, path: '/count', cookies: server.cookies, duration: 1 }) // warm-up
    const r = await load({ port: server.port, path: '/count', cookies: server.cookies, duration: DURATION })
    if (r.non2xx > 0 || r.errors > 0) throw new Error(`/count: ${r.non2xx} non-2xx, ${r.errors} errors`)
    return { rps: r.requests.average, p99: r.latency.p99 }
  } finally {
    server.child.kill('SIGTERM')
    await new Promise((resolve) => (server.child.exitCode === null ? server.child.once('exit', resolve) : resolve()))
  }
}

async function main() {
  fs.rmSync(ROOT, { recursive: true, force: true })
  fs.mkdirSync(ROOT)
  console.log(`CoatcheckStore.set, 200 B sessions over ${SESSIONS} ids, median of ${ROUNDS} rounds (${OPS} ops; always: ${Math.min(OPS, 5_000)})`)
  console.log('in flight  mode        sets/s    vs no log')
  for (const inFlight of [1, 64]) {
    const results = Object.fromEntries(MODES.map((m) => [m, []]))
    // Round 0 warms up (JIT, page cache) and is not counted; later rounds rotate the order,
    // so no mode always follows the same one (whose log may still be closing).
    for (let round = 0; round <= ROUNDS; round++) {
      for (const mode of rotated(MODES, round)) {
        const ops = await storeRound(mode, inFlight)
        if (round > 0) results[mode].push(ops)
        global.gc?.()
      }
    }
    const base = median(results.none)
    for (const mode of MODES) {
      const ops = median(results[mode])
      console.log(`${String(inFlight).padStart(9)}  ${mode.padEnd(9)} ${String(Math.round(ops)).padStart(9)}   ${(ops / base).toFixed(2)}x`)
    }
  }
  const http = { none: [], interval: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const withLog of round % 2 === 0 ? [false, true] : [true, false]) {
      http[withLog ? 'interval' : 'none'].push(await httpRound(withLog))
    }
  }
  console.log(`\nExpress /count (a session write per request), 32 connections, median of ${ROUNDS} x ${DURATION} s`)
  console.log('log                 req/s   p99 ms   req/s vs no log')
  const baseRps = median(http.none.map((r) => r.rps))
  for (const [mode, label] of [['none', 'none'], ['interval', 'fsync interval']]) {
    const rps = median(http[mode].map((r) => r.rps))
    const p99 = median(http[mode].map((r) => r.p99))
    console.log(`${label.padEnd(16)} ${String(Math.round(rps)).padStart(8)} ${String(p99).padStart(8)}   ${(rps / baseRps).toFixed(2)}x`)
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
