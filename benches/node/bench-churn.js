'use strict'

// Churn: sessions with a 2 s maxAge created at a steady rate for 30 s and never read again,
// then 15 s of quiet. Each store runs in its own process; its RSS (and, for connect-redis,
// redis-server's used memory) is sampled every 500 ms and drawn as an SVG line chart.
//
// Run: `make bench-node`, or `node bench-churn.js [out.svg]` in benches/node.

const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { STORES, startRedis, makeStore, mib } = require('./common')

const CREATE_SECONDS = Number(process.env.CHURN_SECONDS ?? 30)
const QUIET_SECONDS = Number(process.env.QUIET_SECONDS ?? 15)
const RATE = Number(process.env.CHURN_RATE ?? 20_000) // new sessions per second
const SAMPLE_MS = 500

async function child(name, redisPort) {
  const { store, close, client } = await makeStore(name, { redisPort })
  const value = { cookie: { originalMaxAge: 2000, expires: null, httpOnly: true, path: '/' }, data: 'x'.repeat(130) }
  const samples = []
  const redisUsed = async () => (client ? Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1]) : 0)
  const start = Date.now()
  let created = 0
  let sampler
  const sample = async () => {
    samples.push({ t: (Date.now() - start) / 1000, rss: process.memoryUsage().rss, redis: await redisUsed() })
  }
  await sample()
  sampler = setInterval(sample, SAMPLE_MS)
  const perTick = RATE / 100
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const now = Date.now()
      value.cookie.expires = new Date(now + 2000)
      for (let i = 0; i < perTick; i++) store.set(`churn-${created++}`, value, () => {})
      if (now - start >= CREATE_SECONDS * 1000) {
        clearInterval(tick)
        resolve()
      }
    }, 10)
  })
  await new Promise((r) => setTimeout(r, QUIET_SECONDS * 1000))
  clearInterval(sampler)
  await sample()
  process.stdout.write(`${JSON.stringify({ name, created, samples })}\n`)
  await close()
  process.exit(0)
}

function svg(series) {
  const W = 760
  const H = 400
  const pad = { l: 60, r: 150, t: 30, b: 40 }
  const tMax = CREATE_SECONDS + QUIET_SECONDS
  const yMax = Math.max(...series.flatMap((s) => s.points.map((p) => p.mib))) * 1.1
  const x = (t) => pad.l + (t / tMax) * (W - pad.l - pad.r)
  const y = (v) => H - pad.b - (v / yMax) * (H - pad.t - pad.b)
  const colors = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd']
  const lines = series.map((s, i) => {
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.mib).toFixed(1)}`).join(' ')
    const last = s.points[s.points.length - 1]
    return `<path d="${d}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="2"/>
<text x="${W - pad.r + 8}" y="${(pad.t + 18 * i + 10).toFixed(0)}" fill="${colors[i % colors.length]}" font-size="12">${s.label} (${last.mib.toFixed(0)} MiB at end)</text>`
  })
  const ticksY = Array.from({ length: 6 }, (_, i) => (yMax / 5) * i)
  const ticksX = Array.from({ length: Math.floor(tMax / 5) + 1 }, (_, i) => i * 5)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${pad.l}" y="18" font-size="13">Memory during churn: ${RATE}/s sessions with 2 s maxAge for ${CREATE_SECONDS} s, never read, then quiet</text>
${ticksY.map((v) => `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${pad.l - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${v.toFixed(0)}</text>`).join('\n')}
${ticksX.map((t) => `<text x="${x(t)}" y="${H - pad.b + 16}" font-size="11" text-anchor="middle">${t}</text>`).join('\n')}
<line x1="${x(CREATE_SECONDS)}" x2="${x(CREATE_SECONDS)}" y1="${pad.t}" y2="${H - pad.b}" stroke="#999" stroke-dasharray="4 3"/>
<text x="${pad.l - 45}" y="${pad.t - 8}" font-size="11">MiB</text>
<text x="${(W - pad.r) / 2}" y="${H - 6}" font-size="11">seconds (dashed: creation stops)</text>
${lines.join('\n')}
</svg>
`
}

async function main() {
  if (process.argv[2] === '--child') return child(process.argv[3], Number(process.argv[4]))
  const out = path.resolve(process.argv[2] ?? path.join(__dirname, 'churn.svg'))
  const redis = await startRedis()
  const results = []
  try {
    for (const name of STORES) {
      results.push(
        await new Promise((resolve, reject) => {
          const p = spawn(process.execPath, [__filename, '--child', name, String(redis.port)], { stdio: ['ignore', 'pipe', 'inherit'] })
          let text = ''
          p.stdout.on('data', (d) => (text += d))
          p.once('exit', (code) => (code === 0 ? resolve(JSON.parse(text)) : reject(new Error(`${name} exited ${code}`))))
        }),
      )
    }
  } finally {
    redis.stop()
  }
  const series = []
  console.log(`\nchurn: ${RATE}/s sessions of 2 s for ${CREATE_SECONDS} s, then ${QUIET_SECONDS} s quiet (RSS in MiB)`)
  console.log('store           created   start    peak     end   end - start')
  for (const r of results) {
    const rss = r.samples.map((s) => ({ t: s.t, mib: s.rss / 1048576 }))
    series.push({ label: `${r.name} (node RSS)`, points: rss })
    const [start, end] = [rss[0].mib, rss[rss.length - 1].mib]
    const peak = Math.max(...rss.map((p) => p.mib))
    console.log(`${r.name.padEnd(14)} ${String(r.created).padStart(8)} ${start.toFixed(0).padStart(7)} ${peak.toFixed(0).padStart(7)} ${end.toFixed(0).padStart(7)} ${(end - start).toFixed(0).padStart(9)}`)
    if (r.samples.some((s) => s.redis > 0)) {
      const redisPts = r.samples.map((s) => ({ t: s.t, mib: s.redis / 1048576 }))
      series.push({ label: 'redis-server used', points: redisPts })
      console.log(`${'  redis-server'.padEnd(14)} ${''.padStart(8)} ${mib(r.samples[0].redis).padStart(7)} ${mib(Math.max(...r.samples.map((s) => s.redis))).padStart(7)} ${mib(r.samples[r.samples.length - 1].redis).padStart(7)}`)
    }
  }
  fs.writeFileSync(out, svg(series))
  console.log(`chart: ${out}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
