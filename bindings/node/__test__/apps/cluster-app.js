'use strict'

// The app of the Node cluster test: `node cluster-app.js <express|fastify> <port>` runs a
// primary that forks 4 workers serving login, write, read and logout on one port. Sessions
// live on Redis when COATCHECK_REDIS_URL is set, else in each worker's own memory.

const cluster = require('node:cluster')
const path = require('node:path')

const [kind, port] = process.argv.slice(2)
const WORKERS = 4

if (cluster.isPrimary) {
  let ready = 0
  for (let i = 0; i < WORKERS; i++) cluster.fork()
  cluster.on('message', (_worker, message) => {
    if (message === 'listening' && ++ready === WORKERS) process.stdout.write('ready\n')
  })
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.kill()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  // The test that started this cluster is gone (timed out, crashed): stop with it.
  process.on('disconnect', stop)
} else {
  // The primary is gone: nothing will stop this worker otherwise.
  process.on('disconnect', () => process.exit(0))
  const { CoatcheckStore } = require(path.join(__dirname, '..', '..'))
  const store = new CoatcheckStore({
    redisUrl: process.env.COATCHECK_REDIS_URL || undefined,
    redisTimeout: Number(process.env.COATCHECK_REDIS_TIMEOUT) || undefined,
  })
  // Report ready once the link to Redis is up (a worker still connecting serves from its own
  // table, as redisWhenDown 'serveLocal' says).
  const whenConnected = (then) => {
    if (!store.shared || store.stats().tier.connected) return then()
    setTimeout(() => whenConnected(then), 10)
  }
  const secret = 'cluster test secret, long enough for fastify'
  const routes = {
    login: (session, query, regenerate, done) =>
      regenerate((err) => {
        if (err) return done(err)
        session().user = query.user
        done(null, 'ok')
      }),
    write: (session, query, _r, done) => {
      const s = session()
      if (!s.user) return done(null, 'not logged in')
      s.items = [...(s.items ?? []), query.item]
      done(null, 'ok')
    },
    read: (session, _q, _r, done) =>
      done(null, JSON.stringify({ user: session().user ?? null, items: session().items ?? [], pid: process.pid })),
  }
  if (kind === 'express') {
    const express = require('express')
    const session = require('express-session')
    const app = express()
    app.use(session({ store, secret, resave: false, saveUninitialized: false }))
    for (const [name, route] of Object.entries(routes)) {
      app[name === 'read' ? 'get' : 'post'](`/${name}`, (req, res, next) =>
        route(() => req.session, req.query, (cb) => req.session.regenerate(cb), (err, body) => (err ? next(err) : res.send(body))),
      )
    }
    app.post('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.send('ok'))))
    app.listen(Number(port), '127.0.0.1', () => whenConnected(() => process.send('listening')))
  } else {
    const fastify = require('fastify')()
    fastify.register(require('@fastify/cookie'))
    fastify.register(require('@fastify/session'), { store, secret, saveUninitialized: false, cookie: { secure: false } })
    for (const [name, route] of Object.entries(routes)) {
      fastify[name === 'read' ? 'get' : 'post'](`/${name}`, (req, reply) =>
        new Promise((resolve, reject) =>
          route(
            () => req.session,
            req.query,
            (cb) => req.session.regenerate().then(() => cb(), cb),
            (err, body) => (err ? reject(err) : resolve(body)),
          ),
        ),
      )
    }
    fastify.post('/logout', async (req) => {
      await req.session.destroy()
      return 'ok'
    })
    fastify.listen({ port: Number(port), host: '127.0.0.1' }).then(() => whenConnected(() => process.send('listening')))
  }
}
