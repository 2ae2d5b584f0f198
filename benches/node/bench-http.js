'use strict'

// HTTP req/s and latency through an Express app (autocannon, 127.0.0.1), per store, with
// 1,000 live sessions and again with 1M resident. Routes: /count rewrites the session on
// every request (store.set), /read only reads it (store.get + store.touch).
//
// Run: `make bench-node`, or `node bench-http.js` in benches/node (RESIDENT=1000,1000000).

const { spawn } = require('node:child_process')
const readline = require('node:readline')
const autocannon = require('autocannon')
const { STORES, startRedis } = require('./common')

const RESIDENTS = (process.env.RESIDENT ?? '1000,1000000').split(',').map(Number)
const DURATION = Number(process.env.DURATION ?? 5)

function startServer(store, resident, redisPort) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [require.resolve('./http-server.js'), store, String(resident), String(redisPort)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const timer = setTimeout(() => reject(new Error(`${store} server did not start in 300 s`)), 300_000)
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer)
      resolve({ child, ...JSON.parse(line) })
    })
    child.once('exit', (code) => reject(new Error(`${store} server exited with ${code}`)))
  })
}

function load(port, path, cookies, duration = DURATION) {
  let next = 0
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: 32,
        duration,
        requests: [
          {
            method: 'GET',
            path,
            setupRequest: (req) => ({ ...req, headers: { ...req.headers, cookie: cookies[next++ % cookies.length] } }),
          },
        ],
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    )
  })
}

async function main() {
  const redis = await startRedis()
  const rows = []
  try {
    for (const resident of RESIDENTS) {
      for (const store of STORES) {
        const server = await startServer(store, resident, redis.port)
        try {
          for (const path of ['/count', '/read']) {
            await load(server.port, path, server.cookies, 1) // warm-up: JIT of server and client
            const r = await load(server.port, path, server.cookies)
            if (r.non2xx > 0 || r.errors > 0) throw new Error(`${store} ${path}: ${r.non2xx} non-2xx, ${r.errors} errors`)
            rows.push({ resident, store, path, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99 })
            console.error(`${resident} ${store} ${path}: ${Math.round(r.requests.average)} req/s p50 ${r.latency.p50} ms p99 ${r.latency.p99} ms`)
          }
        } finally {
          server.child.kill('SIGTERM')
        }
      }
    }
  } finally {
    redis.stop()
  }
  console.log(`\nHTTP through Express, 32 connections, ${DURATION} s per cell; ratio = coatcheck / that store`)
  console.log('resident  route   store           req/s   p50 ms  p99 ms   req/s ratio  p99 ratio')
  for (const row of rows) {
    const base = rows.find((r) => r.resident === row.resident && r.path === row.path && r.store === 'coatcheck')
    console.log(
      `${String(row.resident).padStart(8)}  ${row.path.padEnd(6)}  ${row.store.padEnd(14)} ${String(Math.round(row.rps)).padStart(7)} ${String(row.p50).padStart(7)} ${String(row.p99).padStart(7)}   ${(base.rps / row.rps).toFixed(2).padStart(9)}x ${(base.p99 / Math.max(row.p99, 1)).toFixed(2).padStart(9)}x`,
    )
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
