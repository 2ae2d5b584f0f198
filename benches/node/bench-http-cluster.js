'use strict'

// The shared tier over HTTP (issue 10): Express in a node:cluster of 2 workers, express-session
// with CoatcheckStore({ redisUrl }) against connect-redis (node-redis), both on one
// redis-server this script starts, in the same run. Goals: req/s >= 1.3x and p99 <= 0.8x
// connect-redis's; ~0 Redis commands per read and 1 per write; 0 sessions lost.
//
// Sessions are created through the app (POST /login) so that each lives in Redis and in the
// near cache of whichever worker created it only: the other worker must find it through
// Redis, as across hosts. Redis commands per request come from INFO commandstats around each
// measured phase (everything Redis ran, whoever sent it, divided by completed requests); the
// near-cache hit rate from the tier counters of both workers around the same phase.
//
// Run: `make bench-node` (all Node benchmarks) or, in benches/node,
// `DURATION=10 SESSIONS=1000 node bench-http-cluster.js`.

const http = require('node:http')
const os = require('node:os')
const { spawn } = require('node:child_process')
const readline = require('node:readline')
const { startRedis, redisCommand, commandStats } = require('./common')
const { load } = require('./load')

const DURATION = Number(process.env.DURATION ?? 10)
const SESSIONS = Number(process.env.SESSIONS ?? 1000)
// The machine is shared and noisy: rounds alternate the contenders, and the tables give medians.
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const CONNECTIONS = 32
// CONTENDERS=coatcheck+redis measures one alone (for profiling it; no ratios then).
// CONTENDERS=coatcheck+redis,script-on-main-thread,connect-redis adds a what-if: the tier's
// write script sent from the main thread, with no near cache (see common.js).
const CONTENDERS = (process.env.CONTENDERS ?? 'coatcheck+redis,connect-redis').split(',')
// ROUTES=write measures one route alone (for profiling it). `mixed`: one request in ten writes.
const ROUTES = [
  { route: 'read', method: 'GET', path: '/read' },
  { route: 'write', method: 'POST', path: '/write' },
  { route: 'mixed', method: 'GET', path: '/mixed' },
].filter(({ route }) => (process.env.ROUTES ?? 'read,write,mixed').split(',').includes(route))

function startCluster(contender, redisPort) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [require.resolve('./http-cluster-server.js'), contender, String(redisPort)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    process.once('exit', () => child.exitCode === null && child.signalCode === null && child.kill('SIGTERM'))
    const timer = setTimeout(() => reject(new Error(`${contender} cluster did not start in 60 s`)), 60_000)
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer)
      resolve({ child, ...JSON.parse(line) })
    })
    child.once('exit', (code) => reject(new Error(`${contender} cluster exited with ${code}`)))
  })
}

function stopCluster({ child }) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.removeAllListeners('exit')
    child.once('exit', resolve)
    child.kill('SIGTERM')
  })
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS })

function request(port, method, path, { cookie, agent = keepAlive } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: cookie ? { cookie } : {} }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

// fn(i) for i < count, CONNECTIONS at a time.
async function inParallel(count, fn) {
  const results = new Array(count)
  let next = 0
  const lane = async () => {
    while (next < count) {
      const i = next++
      results[i] = await fn(i)
    }
  }
  await Promise.all(Array.from({ length: CONNECTIONS }, lane))
  return results
}

async function login(port) {
  return inParallel(SESSIONS, async () => {
    const res = await request(port, 'POST', '/login')
    const setCookie = res.headers['set-cookie']
    if (res.status !== 200 || !setCookie) throw new Error(`POST /login: HTTP ${res.status}, no cookie`)
    return setCookie[0].split(';', 1)[0]
  })
}

// Sessions whose /read no longer finds them: express-session hands a missing one over as a
// new, empty session, so the user is gone.
async function countLost(port, cookies) {
  const found = await inParallel(cookies.length, async (i) => {
    const res = await request(port, 'GET', '/read', { cookie: cookies[i] })
    return res.status === 200 && JSON.parse(res.body).user === 'user-42'
  })
  return found.filter((ok) => !ok).length
}

// The tier counters summed over the workers. Each worker answers for itself, and the cluster
// primary hands new connections to the workers in turn: ask over fresh connections until
// every worker has answered.
async function tierTotals(server) {
  const seen = new Map()
  for (let attempt = 0; seen.size < server.pids.length; attempt++) {
    if (attempt === 100) throw new Error(`/_stats: only workers ${[...seen.keys()]} of ${server.pids} answered`)
    const { pid, tier } = JSON.parse((await request(server.port, 'GET', '/_stats', { agent: false })).body)
    seen.set(pid, tier)
  }
  const tiers = [...seen.values()]
  if (tiers.some((t) => t === null)) return null
  const sum = (field) => tiers.reduce((total, t) => total + t[field], 0)
  return { nearHits: sum('nearHits'), nearMisses: sum('nearMisses'), roundTrips: sum('roundTrips'), failures: sum('failures') }
}

async function measure(server, redisPort, { route, method, path }, cookies) {
  await load({ port: server.port, method, path, cookies, connections: CONNECTIONS, duration: 1 }) // warm-up: JIT, near caches
  const tierBefore = await tierTotals(server)
  const commandsBefore = await commandStats(redisPort)
  const r = await load({ port: server.port, method, path, cookies, connections: CONNECTIONS, duration: DURATION })
  const commandsAfter = await commandStats(redisPort)
  commandsAfter.info -= 1 // the INFO before
  const requests = r.requests.total
  const byCommand = Object.entries(commandsAfter)
    .map(([name, calls]) => [name, (calls - (commandsBefore[name] ?? 0)) / requests])
    .sort((a, b) => b[1] - a[1])
  const tierAfter = await tierTotals(server)
  const row = {
    route,
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    commandsPerRequest: byCommand.reduce((total, [, perRequest]) => total + perRequest, 0),
    byCommand,
    nearHitRate: null,
    roundTripsPerRequest: null,
    tierFailures: 0,
  }
  if (tierBefore && tierAfter) {
    const hits = tierAfter.nearHits - tierBefore.nearHits
    const misses = tierAfter.nearMisses - tierBefore.nearMisses
    row.nearHitRate = hits + misses > 0 ? hits / (hits + misses) : null
    row.roundTripsPerRequest = (tierAfter.roundTrips - tierBefore.roundTrips) / requests
    row.tierFailures = tierAfter.failures - tierBefore.failures
  }
  return row
}

const fixed = (x, digits) => (x === null ? '–' : x.toFixed(digits))
const percent = (x) => (x === null ? '–' : `${(100 * x).toFixed(1)} %`)

const median = (xs) => {
  const sorted = xs.filter((x) => x !== null).sort((a, b) => a - b)
  return sorted.length === 0 ? null : sorted[Math.floor(sorted.length / 2)]
}

// One row per contender and route: medians over the rounds (counts summed).
function summarize(rows) {
  const out = []
  for (const { route } of ROUTES) {
    for (const contender of CONTENDERS) {
      const mine = rows.filter((r) => r.route === route && r.contender === contender)
      const of = (field) => median(mine.map((r) => r[field]))
      const sum = (field) => mine.reduce((total, r) => total + r[field], 0)
      const byCommand = [...new Set(mine.flatMap((r) => r.byCommand.map(([name]) => name)))]
        .map((name) => [name, median(mine.map((r) => r.byCommand.find(([n]) => n === name)?.[1] ?? 0))])
        .sort((a, b) => b[1] - a[1])
      out.push({
        route, contender, rps: of('rps'), p50: of('p50'), p99: of('p99'), non2xx: sum('non2xx'), errors: sum('errors'),
        commandsPerRequest: of('commandsPerRequest'), roundTripsPerRequest: of('roundTripsPerRequest'),
        nearHitRate: of('nearHitRate'), tierFailures: sum('tierFailures'), byCommand,
        perRound: mine.map((r) => `${Math.round(r.rps)}/${r.p99}`).join(', '),
      })
    }
  }
  return out
}

function report(allRows, lost) {
  const rows = summarize(allRows)
  const command = `cd benches/node && ROUNDS=${ROUNDS} DURATION=${DURATION} SESSIONS=${SESSIONS} node bench-http-cluster.js`
  console.log(`\n### Express, node:cluster of 2 workers, sessions on one redis-server\n`)
  console.log(`\`${command}\` (Node ${process.version}, ${os.cpus().length} CPUs, autocannon on the same machine)`)
  console.log(`${SESSIONS} sessions, ${CONNECTIONS} connections, ${DURATION} s per cell after 1 s of warm-up, median of ${ROUNDS} rounds ` +
    '(rounds alternate which contender goes first). Redis cmds/req: everything Redis ran during the cell over completed requests.\n')
  console.log('| route | contender | req/s | p50 ms | p99 ms | non-2xx | errors | Redis cmds/req | tier round trips/req | near-cache hit rate | req/s / p99 per round |')
  console.log('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|')
  for (const r of rows) {
    console.log(`| ${r.route} | ${r.contender} | ${Math.round(r.rps)} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${fixed(r.commandsPerRequest, 2)} | ${fixed(r.roundTripsPerRequest, 2)} | ${percent(r.nearHitRate)} | ${r.perRound} |`)
  }
  console.log('\nRedis commands per request by name (those run inside Lua scripts included):')
  for (const r of rows) console.log(`- ${r.route}, ${r.contender}: ${r.byCommand.filter(([, n]) => n >= 0.01).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')}`)
  if (CONTENDERS.length > 1) console.log('\n| route | req/s coatcheck / connect-redis (goal ≥ 1.3) | p99 coatcheck / connect-redis (goal ≤ 0.8) |')
  if (CONTENDERS.length > 1) console.log('|---|--:|--:|')
  for (const { route } of CONTENDERS.length > 1 ? ROUTES : []) {
    const ours = rows.find((r) => r.route === route && r.contender === 'coatcheck+redis')
    const theirs = rows.find((r) => r.route === route && r.contender === 'connect-redis')
    console.log(`| ${route} | ${(ours.rps / theirs.rps).toFixed(2)}x | ${theirs.p99 > 0 ? (ours.p99 / theirs.p99).toFixed(2) : '–'}x |`)
  }
  console.log(`\nSessions lost (of ${SESSIONS} per round, checked after both phases): ${CONTENDERS.map((c) => `${c} ${lost[c]}`).join(', ')}`)
  const tierFailures = rows.reduce((total, r) => total + r.tierFailures, 0)
  if (tierFailures > 0) console.log(`coatcheck tier failures during the cells: ${tierFailures}`)
}

async function main() {
  const redis = await startRedis()
  const rows = []
  const lost = {}
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? CONTENDERS : [...CONTENDERS].reverse()
      for (const contender of order) {
        await redisCommand(redis.port, 'FLUSHALL')
        const server = await startCluster(contender, redis.port)
        try {
          const cookies = await login(server.port)
          for (const route of ROUTES) {
            const row = { contender, round, ...(await measure(server, redis.port, route, cookies)) }
            console.error(`round ${round + 1} ${contender} /${row.route}: ${Math.round(row.rps)} req/s, p50 ${row.p50} ms, p99 ${row.p99} ms, ${fixed(row.commandsPerRequest, 2)} Redis cmds/req, near hits ${percent(row.nearHitRate)}`)
            rows.push(row)
          }
          lost[contender] = (lost[contender] ?? 0) + (await countLost(server.port, cookies))
        } finally {
          await stopCluster(server)
        }
      }
    }
  } finally {
    await redis.stop()
  }
  report(rows, lost)
  process.exit(0)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
