'use strict'

// Memory per session at 1M sessions of ~200 B (JSON), per store, each in its own process:
// RSS and V8 heap growth after a full GC. For connect-redis the sessions live in
// redis-server, so its used memory is reported too.
//
// Run: `make bench-node`, or `node --expose-gc bench-memory.js` in benches/node (SESSIONS=...).

const { spawn } = require('node:child_process')
const { STORES, startRedis, makeStore, call, sessionOf, mib } = require('./common')

const SESSIONS = Number(process.env.SESSIONS ?? 1_000_000)

async function child(name, redisPort) {
  global.gc()
  const before = process.memoryUsage()
  const { store, close, client } = await makeStore(name, { redisPort })
  const value = sessionOf(200)
  value.cookie.expires = new Date(Date.now() + 3_600_000)
  let redisBefore = 0
  if (client) redisBefore = Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1])
  const batch = 1000
  for (let start = 0; start < SESSIONS; start += batch) {
    const pending = []
    for (let i = start; i < Math.min(SESSIONS, start + batch); i++) pending.push(call((cb) => store.set(`sess-${i}`, value, cb)))
    await Promise.all(pending)
  }
  for (let i = 0; i < 3; i++) {
    global.gc()
    await new Promise((r) => setTimeout(r, 100))
  }
  const after = process.memoryUsage()
  let redisBytes = 0
  if (client) redisBytes = Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1]) - redisBefore
  const length = await call((cb) => store.length(cb))
  process.stdout.write(
    `${JSON.stringify({ name, length, rss: after.rss - before.rss, heap: after.heapUsed - before.heapUsed, external: after.external - before.external, redisBytes })}\n`,
  )
  await close()
  process.exit(0)
}

async function main() {
  if (process.argv[2] === '--child') return child(process.argv[3], Number(process.argv[4]))
  const redis = await startRedis()
  const rows = []
  try {
    for (const name of STORES) {
      const out = await new Promise((resolve, reject) => {
        const p = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=8192', __filename, '--child', name, String(redis.port)], { stdio: ['ignore', 'pipe', 'inherit'] })
        let text = ''
        p.stdout.on('data', (d) => (text += d))
        p.once('exit', (code) => (code === 0 ? resolve(JSON.parse(text)) : reject(new Error(`${name} exited ${code}`))))
      })
      rows.push(out)
    }
  } finally {
    redis.stop()
  }
  const per = (b) => (b / SESSIONS).toFixed(0).padStart(8)
  console.log(`\nmemory per session at ${SESSIONS} sessions of ~200 B JSON (bytes; lower is better)`)
  console.log('store           RSS/sess  heap/sess  redis/sess   RSS total   RSS ratio (coatcheck / store)')
  const base = rows[0]
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(14)} ${per(r.rss)}   ${per(r.heap)}    ${per(r.redisBytes)}   ${mib(r.rss).padStart(7)} MiB   ${(base.rss / r.rss).toFixed(2)}x${r.length !== SESSIONS ? `  (length ${r.length})` : ''}`,
    )
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
