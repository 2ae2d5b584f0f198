'use strict'

// The soak (issue 12; `make soak`, not in CI): the Express demo (examples/express) and a Flask
// app under gunicorn (benches/soak/flask_app.py), each keeping its sessions in coatcheck with a
// restart log, under a fixed rate of mixed traffic for SOAK_SECONDS (600):
//   simulated browsers log in, view pages, write notes, log out or abandon their session
//   (churn: it expires after SOAK_IDLE_SECONDS); send forged and tampered cookies, notes too large
//   for a session or a request, a cookie header too large for the server; and fire four
//   requests at once on one session.
// Every answer is checked against what the browser's own history says it must be (the view
// counter goes on by exactly one, a logged-out session stays out, a forged cookie reaches no
// session...). Each server's RSS is read from /proc every second.
// Passes when, after the warm-up, each server's RSS stays within ±10% of its median, with 0
// unexpected answers and 0 5xx. Draws soak.svg and prints a summary; exits 1 on a miss.
//
// With SOAK_TIER=1 (`make soak-tier`) the sessions are on the shared tier instead of a restart
// log: a redis-server of the run's own (a free 127.0.0.1 port, no persistence, stopped by PID),
// two Express demo processes that the browsers' requests alternate between, as a load balancer
// would send them, and gunicorn with two workers. So a page view, a note, a burst or a logout is
// answered by one process and checked through the other. Every process's RSS is judged, and so
// is Redis's own memory (INFO `used_memory`): what expired sessions leave behind there shows.
//
// Run: `make soak` (SOAK_SECONDS, SOAK_RATE, SOAK_USERS, SOAK_IDLE_SECONDS, SOAK_GC_LOG_DIR), or
// `node benches/soak/soak.js [out.svg]` with SOAK_GUNICORN pointing at the venv's gunicorn.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const net = require('node:net')
const { spawn, execFile } = require('node:child_process')

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600)
const RATE = Number(process.env.SOAK_RATE ?? 150) // actions started per second, per server
const USERS = Number(process.env.SOAK_USERS ?? 200) // simulated browsers per server
const IDLE_SECONDS = Number(process.env.SOAK_IDLE_SECONDS ?? 60)
// Long enough for abandoned sessions to start expiring and the heaps to settle.
const WARMUP_SECONDS = Number(process.env.SOAK_WARMUP_SECONDS ?? Math.max(2 * IDLE_SECONDS, SECONDS / 4))
const TIMEOUT_MS = 5000
const RSS_BAND = 0.1
// Whether RSS counts toward the verdict (the 30 s smoke run in CI has no steady state to judge).
const JUDGE_RSS = process.env.SOAK_JUDGE_RSS !== '0'
// A directory for each Express process's V8 garbage-collector trace (`node --trace-gc`), to tell
// a heap that grows and is compacted from memory held elsewhere.
const GC_LOG_DIR = process.env.SOAK_GC_LOG_DIR
// Figures "after warm-up" start here (half the run when the run is shorter than two warm-ups).
const JUDGED_FROM = Math.min(WARMUP_SECONDS, SECONDS / 2)
// Sessions on the shared tier (Redis) instead of a restart log per server.
const TIER = process.env.SOAK_TIER === '1'

const root = path.resolve(__dirname, '..', '..')

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

// Every server process started, registered as soon as it is spawned, so that it is stopped
// (by PID, in main's finally or on SIGINT/SIGTERM) whatever happens next.
const children = []

function track(child) {
  children.push(child)
  child.spawnError = null
  child.on('error', (err) => (child.spawnError = err))
  return child
}

async function waitUntilUp(base, child) {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (child.spawnError) throw new Error(`${base}: cannot start the server: ${child.spawnError.message}`)
    if (child.exitCode !== null) throw new Error(`${base}: server exited with ${child.exitCode}`)
    try {
      if ((await fetch(`${base}/stats`)).ok) return
    } catch {}
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`${base}: not up within 30 s`)
}

// Where the sessions go: the shared tier's Redis, or a restart log of the server's own.
function storeEnv(dir, name, redisUrl) {
  return redisUrl ? { COATCHECK_REDIS_URL: redisUrl } : { COATCHECK_PERSIST_PATH: path.join(dir, name) }
}

// One demo process, or (on the shared tier) two that the browsers' requests alternate between.
async function startExpress(dir, redisUrl) {
  const bases = []
  const processes = []
  for (let i = 0; i < (redisUrl ? 2 : 1); i++) {
    const port = await freePort()
    const child = track(
      spawn(process.execPath, [...(GC_LOG_DIR ? ['--trace-gc'] : []), 'server.js'], {
        cwd: path.join(root, 'examples', 'express'),
        env: { ...process.env, ...storeEnv(dir, 'express', redisUrl), PORT: String(port), SESSION_IDLE_SECONDS: String(IDLE_SECONDS) },
        stdio: ['ignore', GC_LOG_DIR ? fs.openSync(path.join(GC_LOG_DIR, `express-${i + 1}.gc.log`), 'w') : 'ignore', 'inherit'],
      }),
    )
    const base = `http://127.0.0.1:${port}`
    await waitUntilUp(base, child)
    bases.push(base)
    processes.push({ label: redisUrl ? `express demo ${i + 1}` : 'express demo', pid: () => child.pid })
  }
  return { name: redisUrl ? 'express demo ×2' : 'express demo', cookie: 'connect.sid', bases, statsUrls: bases, processes }
}

async function startFlask(dir, redisUrl) {
  const gunicorn = process.env.SOAK_GUNICORN ?? path.join(root, '.venv', 'bin', 'gunicorn')
  const port = await freePort()
  // On the shared tier the kernel spreads the client's connections over two workers.
  const workers = redisUrl ? 2 : 1
  const child = track(
    spawn(
      gunicorn,
      // --keep-alive above undici's 4 s: the client, not the server, closes an idle connection.
      // With gunicorn's 2 s default the server could close one just as the client reused it,
      // and the request failed with UND_ERR_SOCKET (seen once in CI).
      ['--chdir', __dirname, '--bind', `127.0.0.1:${port}`, '--workers', String(workers), '--worker-class', 'gthread', '--threads', '8', '--keep-alive', '10', '--log-level', 'error', 'flask_app:app'],
      {
        env: { ...process.env, ...storeEnv(dir, 'flask', redisUrl), SESSION_IDLE_SECONDS: String(IDLE_SECONDS) },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    ),
  )
  const base = `http://127.0.0.1:${port}`
  await waitUntilUp(base, child)
  // The workers serve the requests and hold the stores; the master only supervises them.
  const worker = (i) => () => {
    try {
      return Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[i]) || null
    } catch {
      return null
    }
  }
  const processes = Array.from({ length: workers }, (_, i) => ({ label: workers > 1 ? `flask worker ${i + 1}` : 'flask (gunicorn)', pid: worker(i) }))
  // Each /stats request reaches whichever worker the kernel picks: one URL, counted once.
  return { name: workers > 1 ? `flask (gunicorn -w ${workers})` : 'flask (gunicorn)', cookie: 'session', bases: [base], statsUrls: [base], processes }
}

// redis-server of the run's own: no persistence, stopped by PID with the servers.
async function startRedis(dir) {
  const port = await freePort()
  const child = track(
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  )
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (child.spawnError) throw new Error(`cannot start redis-server: ${child.spawnError.message}`)
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
    if ((await redisInfo(port).catch(() => null)) !== null) return { port, url: `redis://127.0.0.1:${port}/0`, child }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('redis-server: not up within 10 s')
}

// Redis's own figures: its memory for data (used_memory), and its keys: the sessions' (under
// `coatcheck:s:`), the owner indexes' (`coatcheck:o:`), all.
function redisInfo(port) {
  const script = "return {redis.call('info','memory'), #redis.call('keys','coatcheck:s:*'), #redis.call('keys','coatcheck:o:*'), redis.call('dbsize')}"
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-p', String(port), '--no-raw', 'eval', script, '0'], { timeout: 5000 }, (err, stdout) => {
      if (err) return reject(err)
      const used = /used_memory:(\d+)/.exec(stdout)
      const count = (n) => Number(new RegExp(`^${n}\\) \\(integer\\) (\\d+)`, 'm').exec(stdout)?.[1])
      const [sessions, owners, all] = [count(2), count(3), count(4)]
      if (!used || [sessions, owners, all].some(Number.isNaN)) return reject(new Error(`redis-cli: unexpected answer ${stdout.slice(0, 200)}`))
      resolve({ usedMib: Number(used[1]) / 2 ** 20, keys: `${sessions}+${owners}${all === sessions + owners ? '' : ` (of ${all})`}` })
    })
  })
}

function rssMib(pid) {
  if (!pid) return null
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : null
  } catch {
    return null
  }
}

const pick = (array) => array[Math.floor(Math.random() * array.length)]
const randomText = (n) => Array.from({ length: n }, () => pick('abcdefghijklmnopqrstuvwxyz ')).join('').trim() || 'x'
const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

// A cookie value of the same shape as the server's own, signed with no secret of the server.
function forgedCookie(server) {
  const id = Array.from({ length: 32 }, () => pick(BASE64.slice(0, 62))).join('')
  const signature = Array.from({ length: 42 }, () => pick(BASE64)).join('') + 'A'
  const token = `${id}.${signature}`
  return encodeURIComponent(server.cookie === 'connect.sid' ? `s:${token}` : token)
}

// `value` with one character of its signature changed.
function tamperedCookie(value) {
  const token = decodeURIComponent(value)
  const at = token.length - 10
  const changed = token[at] === 'A' ? 'B' : 'A'
  return encodeURIComponent(token.slice(0, at) + changed + token.slice(at + 1))
}

// The browser drops its cookie and what it knew of its session.
function forget(browser) {
  Object.assign(browser, { cookie: null, user: null, views: 0, note: '(none)' })
}

// One server's traffic: the browsers, the checks, the figures.
class Traffic {
  constructor(server) {
    this.server = server
    this.browsers = Array.from({ length: USERS }, (_, i) => ({ i, generation: 0, cookie: null, user: null, views: 0, note: '(none)', busy: false, seen: 0 }))
    this.expired = 0
    this.requests = 0
    this.statuses = new Map()
    this.errors = 0
    this.errorSamples = []
    this.fiveXX = 0
    this.skipped = 0
    this.latencies = [] // [seconds since start, ms]
    this.actions = new Map()
    this.turn = 0
  }

  // An answer that is not what the browser's history says. The browser starts over, so that one
  // lost session counts once.
  fail(browser, what) {
    if (browser.user && Date.now() - browser.seen >= IDLE_SECONDS * 1000) {
      // No request reached the session for an idle timeout: it expired, as it should.
      this.expired++
    } else {
      this.errors++
      if (this.errorSamples.length < 20) this.errorSamples.push(`${this.server.name} browser ${browser.i}: ${what}`)
    }
    forget(browser)
  }

  // A request reached the browser's session (and slid its idle deadline).
  reached(browser) {
    browser.seen = Date.now()
  }

  async request(method, route, { cookie, body, headers = {} } = {}) {
    const started = performance.now()
    const init = { method, redirect: 'manual', headers: { ...headers }, signal: AbortSignal.timeout(TIMEOUT_MS) }
    if (cookie !== undefined) init.headers.cookie = cookie
    if (body !== undefined) {
      init.headers['content-type'] = 'application/x-www-form-urlencoded'
      init.body = body
    }
    this.requests++
    // The next process in turn, as a round-robin load balancer would pick.
    const base = this.server.bases[this.turn++ % this.server.bases.length]
    const response = await fetch(base + route, init)
    const text = await response.text()
    const ms = performance.now() - started
    this.latencies.push([(Date.now() - this.start) / 1000, ms])
    this.statuses.set(response.status, (this.statuses.get(response.status) ?? 0) + 1)
    if (response.status >= 500) this.fiveXX++
    let setCookie = null
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const eq = pair.indexOf('=')
      if (pair.slice(0, eq) === this.server.cookie) setCookie = /expires=Thu, 01 Jan 1970/i.test(line) ? '' : pair.slice(eq + 1)
    }
    return { status: response.status, text, setCookie }
  }

  jar(browser) {
    return browser.cookie ? `${this.server.cookie}=${browser.cookie}` : undefined
  }

  keep(browser, response) {
    if (response.setCookie !== null) browser.cookie = response.setCookie || null
  }

  async login(browser) {
    browser.generation++
    const user = `u${browser.i}-${browser.generation}`
    const r = await this.request('POST', '/login', { cookie: this.jar(browser), body: `user=${user}` })
    if (r.status !== 303 || !r.setCookie) return this.fail(browser, `login: ${r.status}, cookie ${r.setCookie}`)
    browser.cookie = r.setCookie
    Object.assign(browser, { user, views: 0, note: '(none)' })
    this.reached(browser)
  }

  // A page view: signed in as this browser's user, the counter one more than last time.
  async view(browser) {
    const r = await this.request('GET', '/', { cookie: this.jar(browser) })
    this.keep(browser, r)
    const views = Number(/<b id="views">(\d+)<\/b>/.exec(r.text)?.[1])
    if (r.status !== 200) return this.fail(browser, `view: ${r.status}`)
    if (browser.user && !r.text.includes(`<b>${browser.user}</b>`)) return this.fail(browser, `view: ${browser.user} not signed in`)
    if (views !== browser.views + 1) return this.fail(browser, `view: counter ${views} after ${browser.views}`)
    browser.views = views
    this.reached(browser)
  }

  async profile(browser) {
    const r = await this.request('GET', '/profile', { cookie: this.jar(browser) })
    this.keep(browser, r)
    if (r.status !== 200 || !r.text.includes(`<b>${browser.user}</b>`)) return this.fail(browser, `profile: ${r.status}, user missing`)
    if (!r.text.includes(`Note: ${browser.note}<`)) return this.fail(browser, 'profile: note is not the last one saved')
    this.reached(browser)
  }

  async note(browser) {
    const note = randomText(20 + Math.floor(Math.random() * 180))
    const r = await this.request('POST', '/note', { cookie: this.jar(browser), body: `note=${encodeURIComponent(note)}` })
    this.keep(browser, r)
    if (r.status !== 303) return this.fail(browser, `note: ${r.status}`)
    browser.note = note
    this.reached(browser)
  }

  // 70 kB: over the demo's session limit (64 KiB), under its body limit; over Flask's
  // MAX_CONTENT_LENGTH. 200 kB: over both body limits. Either way a 413 and the note stays.
  async oversizeNote(browser) {
    const size = Math.random() < 0.7 ? 70_000 : 200_000
    const r = await this.request('POST', '/note', { cookie: this.jar(browser), body: `note=${'x'.repeat(size)}` })
    if (r.status !== 413) return this.fail(browser, `${size} B note: ${r.status}, not 413`)
    await this.profile(browser)
  }

  // A cookie header past the server's header limits (Node 16 KiB, gunicorn 8 KiB per field).
  async hugeCookie(browser) {
    const r = await this.request('GET', '/', { cookie: `${this.jar(browser)}; junk=${'j'.repeat(20_000)}` })
    if (r.status !== 400 && r.status !== 431) return this.fail(browser, `20 kB cookie: ${r.status}, not 400/431`)
  }

  // A cookie this server never signed: an anonymous page, no session reached.
  async forged(browser) {
    const r = await this.request('GET', '/', { cookie: `${this.server.cookie}=${forgedCookie(this.server)}` })
    if (r.status !== 200 || r.text.includes('Signed in as') || !r.text.includes('<b id="views">1</b>')) return this.fail(browser, `forged cookie: ${r.status}, reached a session`)
  }

  async tampered(browser) {
    const r = await this.request('GET', '/', { cookie: `${this.server.cookie}=${tamperedCookie(browser.cookie)}` })
    if (r.status !== 200 || r.text.includes('Signed in as') || !r.text.includes('<b id="views">1</b>')) return this.fail(browser, `tampered cookie: ${r.status}, reached a session`)
  }

  // Four requests at once on one session: none fails, none logs the user out, and the counter
  // ends between one and four higher (concurrent writes of one key: the last one wins).
  async burst(browser) {
    const before = browser.views
    const rs = await Promise.all(Array.from({ length: 4 }, () => this.request('GET', '/', { cookie: this.jar(browser) })))
    let most = before
    for (const r of rs) {
      const views = Number(/<b id="views">(\d+)<\/b>/.exec(r.text)?.[1])
      if (r.status !== 200 || !r.text.includes(`<b>${browser.user}</b>`)) return this.fail(browser, `burst: ${r.status}, user missing`)
      if (!(views > before && views <= before + 4)) return this.fail(browser, `burst: counter ${views} after ${before}`)
      most = Math.max(most, views)
    }
    // Which write landed last is unknown: read the counter back.
    const r = await this.request('GET', '/', { cookie: this.jar(browser) })
    const views = Number(/<b id="views">(\d+)<\/b>/.exec(r.text)?.[1])
    if (r.status !== 200 || !(views > before + 1 && views <= most + 1)) return this.fail(browser, `after burst: ${r.status}, counter ${views} after ${before}..${most}`)
    browser.views = views
    this.reached(browser)
  }

  // Logged out, and the old cookie stays out.
  async logout(browser) {
    const old = this.jar(browser)
    const r = await this.request('POST', '/logout', { cookie: old })
    if (r.status !== 303) return this.fail(browser, `logout: ${r.status}`)
    const after = await this.request('GET', '/profile', { cookie: old })
    forget(browser)
    if (after.status !== 401) this.fail(browser, `old cookie after logout: ${after.status}, not 401`)
  }

  // The browser forgets its cookie (closed, cleared): the session is left to expire.
  async abandon(browser) {
    forget(browser)
    await this.login(browser)
  }

  async act(browser) {
    const signedIn = [
      ['view', 40], ['profile', 12], ['note', 10], ['burst', 5], ['oversizeNote', 3], ['hugeCookie', 2],
      ['forged', 5], ['tampered', 3], ['logout', 8], ['abandon', 5],
    ]
    let action = 'login'
    if (browser.user) {
      let roll = Math.random() * 93
      for (const [name, weight] of signedIn) if ((roll -= weight) < 0) { action = name; break }
      if (action === 'login') action = 'view'
    } else if (!browser.cookie && Math.random() < 0.3) {
      action = 'view' // an anonymous visit first: the counter starts, login replaces the session
    }
    this.actions.set(action, (this.actions.get(action) ?? 0) + 1)
    browser.busy = true
    try {
      await this[action](browser)
    } catch (err) {
      this.fail(browser, `${action}: ${err.cause?.code ?? err.name}: ${err.message}`)
    } finally {
      browser.busy = false
    }
  }

  startOne() {
    for (let tries = 0; tries < 8; tries++) {
      const browser = this.browsers[Math.floor(Math.random() * USERS)]
      if (!browser.busy) return void this.act(browser)
    }
    this.skipped++
  }
}

function quantile(sorted, q) {
  if (!sorted.length) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

function median(values) {
  return quantile([...values].sort((a, b) => a - b), 0.5)
}

function svg(series) {
  const W = 800
  const H = 420
  const pad = { l: 60, r: 230, t: 34, b: 42 }
  const tMax = SECONDS
  const yMax = Math.max(...series.flatMap((s) => s.points.map((p) => p.mib))) * 1.15
  const x = (t) => pad.l + (t / tMax) * (W - pad.l - pad.r)
  const y = (v) => H - pad.b - (v / yMax) * (H - pad.t - pad.b)
  const colors = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e']
  const parts = series.map((s, i) => {
    const color = colors[i % colors.length]
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.mib).toFixed(1)}`).join(' ')
    const band = [s.median * (1 - RSS_BAND), s.median * (1 + RSS_BAND)]
      .map((v) => `<line x1="${x(JUDGED_FROM)}" x2="${x(tMax)}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="${color}" stroke-opacity="0.5" stroke-dasharray="3 3"/>`)
      .join('\n')
    return `${band}
<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>
<text x="${W - pad.r + 8}" y="${pad.t + 40 * i + 10}" fill="${color}" font-size="12">${s.label}</text>
<text x="${W - pad.r + 8}" y="${pad.t + 40 * i + 25}" fill="${color}" font-size="11">median ${s.median.toFixed(1)} MiB, ${s.spread}</text>`
  })
  const step = yMax > 100 ? 50 : yMax > 40 ? 20 : 10
  const ticksY = Array.from({ length: Math.floor(yMax / step) + 1 }, (_, i) => i * step)
  const xStep = tMax > 300 ? 60 : 10
  const ticksX = Array.from({ length: Math.floor(tMax / xStep) + 1 }, (_, i) => i * xStep)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${pad.l}" y="20" font-size="13">${TIER ? 'RSS (Redis: used_memory) during the shared-tier soak' : 'RSS during the soak'}: ${RATE} actions/s per server, ${USERS} browsers each, for ${SECONDS} s</text>
<rect x="${pad.l}" y="${pad.t}" width="${(x(JUDGED_FROM) - pad.l).toFixed(1)}" height="${H - pad.t - pad.b}" fill="#f4f4f4"/>
${ticksY.map((v) => `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(v)}" y2="${y(v)}" stroke="#e6e6e6"/><text x="${pad.l - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${v}</text>`).join('\n')}
${ticksX.map((t) => `<text x="${x(t)}" y="${H - pad.b + 16}" font-size="11" text-anchor="middle">${t}</text>`).join('\n')}
<text x="${pad.l - 45}" y="${pad.t - 6}" font-size="11">MiB</text>
<text x="${pad.l + 4}" y="${pad.t + 14}" font-size="11" fill="#777">warm-up</text>
<text x="${(W - pad.r) / 2}" y="${H - 8}" font-size="11">seconds (dashed: ±${RSS_BAND * 100}% of the median after warm-up)</text>
${parts.join('\n')}
</svg>
`
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

// Whether the samples after the warm-up stay within ±RSS_BAND of their median.
function judge(points) {
  const after = points.filter((p) => p.t >= JUDGED_FROM && p.mib !== null)
  const m = median(after.map((p) => p.mib))
  const lo = Math.min(...after.map((p) => p.mib))
  const hi = Math.max(...after.map((p) => p.mib))
  const flat = after.length > 0 && lo >= m * (1 - RSS_BAND) && hi <= m * (1 + RSS_BAND)
  const spread = `${((lo / m - 1) * 100).toFixed(1)}% .. +${((hi / m - 1) * 100).toFixed(1)}%`
  return { median: m, lo, hi, flat, spread }
}

async function main() {
  const out = path.resolve(process.argv[2] ?? path.join(__dirname, TIER ? 'soak-tier.svg' : 'soak.svg'))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coatcheck-soak-'))
  const servers = []
  try {
    const redis = TIER ? await startRedis(dir) : null
    servers.push(await startExpress(dir, redis?.url))
    servers.push(await startFlask(dir, redis?.url))
    const traffic = servers.map((s) => new Traffic(s))
    const start = Date.now()
    for (const t of traffic) t.start = start
    // One RSS series per process that holds a store; on the tier, Redis's memory too.
    const processes = servers.flatMap((s) => s.processes)
    const samples = processes.map(() => [])
    const redisSamples = []
    const redisKeys = []
    const sessions = servers.map(() => [])
    const sampler = setInterval(() => {
      const t = (Date.now() - start) / 1000
      processes.forEach((p, i) => samples[i].push({ t, mib: rssMib(p.pid()) }))
    }, 1000)
    const counter = setInterval(() => {
      servers.forEach(async (s, i) => {
        try {
          const stats = await Promise.all(s.statsUrls.map(async (url) => (await fetch(`${url}/stats`)).json()))
          sessions[i].push(stats.map((one) => one.sessions).join('+'))
        } catch {}
      })
      if (redis) {
        const t = (Date.now() - start) / 1000
        redisInfo(redis.port).then(
          ({ usedMib, keys }) => {
            redisSamples.push({ t, mib: usedMib })
            redisKeys.push(keys)
          },
          () => redisSamples.push({ t, mib: null }),
        )
      }
    }, 10_000)
    const owed = servers.map(() => 0)
    const ticker = setInterval(() => {
      traffic.forEach((t, i) => {
        owed[i] += RATE / 100
        for (; owed[i] >= 1; owed[i]--) t.startOne()
      })
    }, 10)
    let lastReport = start
    await new Promise((resolve) => {
      const reporter = setInterval(() => {
        const now = Date.now()
        if (now - lastReport >= 60_000) {
          lastReport = now
          const rss = processes.map((p, i) => `${p.label} ${samples[i].at(-1)?.mib?.toFixed(1)}`).join(', ')
          const load = traffic.map((t) => `${t.server.name}: ${t.requests} req, ${t.errors} errors`).join(' | ')
          const keys = redis ? ` | Redis ${redisSamples.at(-1)?.mib?.toFixed(1)} MiB, ${redisKeys.at(-1)} keys (sessions + owners)` : ''
          console.log(`[${Math.round((now - start) / 1000)} s] ${load} | RSS MiB: ${rss}${keys}`)
        }
        if (now - start >= SECONDS * 1000) {
          clearInterval(reporter)
          resolve()
        }
      }, 1000)
    })
    clearInterval(ticker)
    clearInterval(sampler)
    clearInterval(counter)
    // Let the requests in flight finish.
    const drain = Date.now()
    while (traffic.some((t) => t.browsers.some((b) => b.busy)) && Date.now() - drain < TIMEOUT_MS * 3) await new Promise((r) => setTimeout(r, 100))
    const finalStats = await Promise.all(servers.map((s) => Promise.all(s.statsUrls.map(async (url) => (await fetch(`${url}/stats`)).json()))))

    let pass = true
    const series = []
    console.log(`\nsoak${TIER ? ' on the shared tier' : ''}: ${SECONDS} s, ${RATE} actions/s per server, ${USERS} browsers each, idle timeout ${IDLE_SECONDS} s, warm-up ${JUDGED_FROM} s`)
    const rssOf = (i) => {
      const { median: m, lo, hi, flat, spread } = judge(samples[i])
      series.push({ label: processes[i].label, points: samples[i].filter((p) => p.mib !== null), median: m, spread })
      pass &&= flat || !JUDGE_RSS
      return `  RSS MiB of ${processes[i].label}: start ${samples[i][0]?.mib?.toFixed(1)}, after warm-up median ${m.toFixed(1)}, min ${lo.toFixed(1)}, max ${hi.toFixed(1)} (${spread}; band ±${RSS_BAND * 100}%): ${flat ? 'flat' : 'NOT flat'}${JUDGE_RSS ? '' : ' (not judged)'}`
    }
    let processIndex = 0
    traffic.forEach((t, i) => {
      const lat = t.latencies.map(([, ms]) => ms).sort((a, b) => a - b)
      const latAfter = t.latencies.filter(([s]) => s >= JUDGED_FROM).map(([, ms]) => ms).sort((a, b) => a - b)
      const ok = t.errors === 0 && t.fiveXX === 0
      pass &&= ok
      const statuses = [...t.statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}: ${n}`).join(', ')
      const actions = [...t.actions].sort(([a], [b]) => a.localeCompare(b)).map(([a, n]) => `${a} ${n}`).join(', ')
      console.log(`\n${t.server.name}: ${ok ? 'answers PASS' : 'answers MISS'}`)
      console.log(`  requests ${t.requests} (${(t.requests / SECONDS).toFixed(0)}/s), unexpected answers ${t.errors}, sessions expired after an idle timeout without requests ${t.expired}, 5xx ${t.fiveXX}, not started (all browsers busy) ${t.skipped}`)
      console.log(`  statuses: ${statuses}`)
      console.log(`  actions: ${actions}`)
      console.log(`  latency ms: p50 ${quantile(lat, 0.5).toFixed(2)}, p99 ${quantile(lat, 0.99).toFixed(2)}, max ${lat.at(-1)?.toFixed(1)}; after warm-up p99 ${quantile(latAfter, 0.99).toFixed(2)}`)
      for (const _ of t.server.processes) console.log(rssOf(processIndex++))
      console.log(`  live sessions (every 10 s): ${sessions[i].join(' ')}; at end ${finalStats[i].map((one) => one.sessions).join('+')}`)
      // Node nests the tier's and the log's figures; Python's stats are one flat dict.
      const part = (one, key) => one[key] ?? Object.fromEntries(Object.entries(one).filter(([k]) => k.startsWith(`${key}_`)))
      for (const one of finalStats[i]) console.log(TIER ? `  tier: ${JSON.stringify(part(one, 'tier'))}` : `  restart log: ${JSON.stringify(part(one, 'log'))}`)
      for (const e of t.errorSamples) console.log(`  ! ${e}`)
    })
    if (redis) {
      const { median: m, lo, hi, flat, spread } = judge(redisSamples)
      series.push({ label: 'redis used_memory', points: redisSamples.filter((p) => p.mib !== null), median: m, spread })
      pass &&= flat || !JUDGE_RSS
      console.log(`\nredis-server: used_memory MiB after warm-up median ${m.toFixed(2)}, min ${lo.toFixed(2)}, max ${hi.toFixed(2)} (${spread}): ${flat ? 'flat' : 'NOT flat'}${JUDGE_RSS ? '' : ' (not judged)'}`)
      console.log(`  keys, sessions + owner indexes (every 10 s): ${redisKeys.join(' ')}`)
    }
    fs.writeFileSync(out, svg(series))
    console.log(`\nchart: ${path.relative(process.cwd(), out)}`)
    console.log(pass ? 'soak: PASS' : 'soak: MISS')
    process.exitCode = pass ? 0 : 1
  } finally {
    await Promise.all(children.map(stop))
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of children) if (child.exitCode === null && child.pid !== undefined) child.kill('SIGTERM')
    process.exit(130)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
