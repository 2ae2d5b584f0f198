'use strict'

// The Express app measured by bench-http.js, in its own process: one store, `resident`
// sessions pre-filled, and 1,000 client sessions whose signed cookies go to stdout.
// Usage: node http-server.js <store> <resident> [redisPort] [persistPath (coatcheck only)]

const express = require('express')
const session = require('express-session')
const signature = require('cookie-signature')
const { makeStore, call, sessionOf } = require('./common')

const SECRET = 'bench secret'
const [storeName, residentArg, redisPortArg, persistPath] = process.argv.slice(2)
const resident = Number(residentArg)

async function fill(store, prefix, count, value) {
  const batch = 1000
  for (let start = 0; start < count; start += batch) {
    const pending = []
    for (let i = start; i < Math.min(count, start + batch); i++) pending.push(call((cb) => store.set(`${prefix}${i}`, value, cb)))
    await Promise.all(pending)
  }
}

async function main() {
  const options = persistPath ? { persistPath } : {}
  const { store } = await makeStore(storeName, { redisPort: Number(redisPortArg), options })
  const value = sessionOf(200)
  value.cookie.expires = new Date(Date.now() + 3_600_000)
  await fill(store, 'resident-', Math.max(0, resident - 1000), value)
  await fill(store, 'client-', 1000, { ...value, views: 0 })
  const app = express()
  app.use(session({ secret: SECRET, store, resave: false, saveUninitialized: false, cookie: { maxAge: 3_600_000 } }))
  app.get('/count', (req, res) => {
    req.session.views = (req.session.views ?? 0) + 1
    res.json({ views: req.session.views })
  })
  app.get('/read', (req, res) => res.json({ views: req.session.views ?? null }))
  const server = app.listen(0, '127.0.0.1', () => {
    const cookies = Array.from({ length: 1000 }, (_, i) => `connect.sid=${encodeURIComponent(`s:${signature.sign(`client-${i}`, SECRET)}`)}`)
    process.stdout.write(`${JSON.stringify({ port: server.address().port, cookies, rss: process.memoryUsage().rss })}\n`)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
