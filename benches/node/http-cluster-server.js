'use strict'

// The Express app measured by bench-http-cluster.js: a node:cluster primary and WORKERS
// workers on one port, each worker with its own store on the same redis-server. The primary
// prints one JSON line, { port, pids }, once every worker listens; SIGTERM stops them all.
// Usage: node http-cluster-server.js <coatcheck+redis|connect-redis|script-on-main-thread> <redisPort>
// (script-on-main-thread: a what-if, see common.js)
//
// Routes: POST /login stores a ~200 B session (the same data as benches/python/flask_app.py),
// GET /read only reads it (express-session: store get, then touch), POST /write changes a
// counter in it (store get, then set), GET /mixed does what /write does on every tenth request
// a worker serves and what /read does on the others (reads outnumber writes in the apps this
// store is for; a session is read while another is being written). GET /_stats is outside the
// session middleware: the answering worker's pid and its store's tier counters (null for
// connect-redis).

const cluster = require('node:cluster')

const WORKERS = Number(process.env.WORKERS ?? 2)
const SECRET = 'bench secret'
const [contender, redisPortArg] = process.argv.slice(2)
const redisPort = Number(redisPortArg)

function primary() {
  const pids = []
  let port = null
  let stopping = false
  for (let i = 0; i < WORKERS; i++) cluster.fork()
  cluster.on('listening', (worker, address) => {
    // listen(0) in a cluster gives every worker the same port; check rather than assume.
    if (port !== null && address.port !== port) throw new Error(`workers listen on ${port} and ${address.port}`)
    port = address.port
    pids.push(worker.process.pid)
    if (pids.length === WORKERS) process.stdout.write(`${JSON.stringify({ port, pids })}\n`)
  })
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      console.error(`worker ${worker.process.pid} exited (${code ?? signal})`)
      process.exit(1)
    }
    if (Object.keys(cluster.workers).length === 0) process.exit(0)
  })
  process.on('SIGTERM', () => {
    stopping = true
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM')
  })
}

async function worker() {
  const express = require('express')
  const session = require('express-session')
  const { makeStore } = require('./common')

  const { store } =
    contender === 'coatcheck+redis'
      ? await makeStore('coatcheck', { options: { redisUrl: `redis://127.0.0.1:${redisPort}/0` } })
      : await makeStore(contender, { redisPort })
  const app = express()
  app.get('/_stats', (req, res) => res.json({ pid: process.pid, tier: typeof store.stats === 'function' ? (store.stats().tier ?? null) : null }))
  app.use(session({ secret: SECRET, store, resave: false, saveUninitialized: false, cookie: { maxAge: 3_600_000 } }))
  app.post('/login', (req, res) => {
    Object.assign(req.session, {
      user: 'user-42',
      roles: ['reader', 'writer'],
      prefs: { theme: 'dark', lang: 'en', tz: 'Europe/Paris' },
      cart: Array.from({ length: 8 }, (_, i) => `sku-${String(i).padStart(4, '0')}`),
      n: 0,
    })
    res.json({ ok: true })
  })
  app.get('/read', (req, res) => res.json({ user: req.session.user ?? null, n: req.session.n ?? null }))
  app.post('/write', (req, res) => {
    req.session.n = (req.session.n ?? 0) + 1
    res.json({ n: req.session.n })
  })
  let served = 0
  app.get('/mixed', (req, res) => {
    if (++served % 10 === 0) req.session.n = (req.session.n ?? 0) + 1
    res.json({ user: req.session.user ?? null, n: req.session.n ?? null })
  })
  app.listen(0, '127.0.0.1')
}

if (cluster.isPrimary) {
  primary()
} else {
  worker().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
