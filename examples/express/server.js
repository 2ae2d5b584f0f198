'use strict'

// The coatcheck demo: `make demo` from the repository root, then open http://127.0.0.1:3000.
// Sessions live in coatcheck, in this process; no external service. A restart log in
// examples/express/.sessions (ignored by git) keeps them across restarts of the demo.
// COATCHECK_REDIS_URL=redis://127.0.0.1:6379/0 puts them on the shared tier instead, so that
// several demo processes serve the same sessions (the soak's `SOAK_TIER=1` run does that).

const path = require('node:path')
const express = require('express')
const session = require('express-session')
const { CoatcheckStore, generateId } = require('coatcheck')

const host = process.env.HOST || '127.0.0.1'
const port = Number(process.env.PORT ?? 3000)
// How long a session lasts without a request (the soak test shortens it).
const idleSeconds = Number(process.env.SESSION_IDLE_SECONDS || 30 * 60)

const store = new CoatcheckStore({
  ttl: idleSeconds, // seconds, for sessions whose cookie has no expiry
  maxSessions: 100_000, // bounded: abandoned sessions are evicted first
  maxSessionBytes: 64 * 1024, // a larger session is refused with code 'too_large'
  ownerOf: (s) => s.user, // enables "log out everywhere"
  // With COATCHECK_REDIS_URL set, sessions are shared with every process on that Redis (and
  // Redis keeps them across restarts); otherwise, restart the demo and stay logged in: every
  // change is logged here before it completes.
  ...(process.env.COATCHECK_REDIS_URL
    ? { redisUrl: process.env.COATCHECK_REDIS_URL }
    : { persistPath: process.env.COATCHECK_PERSIST_PATH || path.join(__dirname, '.sessions') }),
})

const app = express()
app.use(express.urlencoded({ extended: false }))
app.use(
  session({
    secret: process.env.SESSION_SECRET || 'demo secret: set SESSION_SECRET in real life',
    store,
    genid: generateId,
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax', maxAge: idleSeconds * 1000 },
  }),
)

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const page = (title, body) => `<!doctype html>
<html><head><meta charset="utf-8"><title>${title} · coatcheck demo</title>
<style>body{font:16px system-ui;max-width:40rem;margin:3rem auto;padding:0 1rem}code{background:#eee;padding:0 .2em}</style>
</head><body><h1>${title}</h1>${body}
<p><a href="/">home</a> · <a href="/profile">profile</a> · <a href="/stats">store stats</a></p></body></html>`

app.get('/', (req, res) => {
  req.session.views = (req.session.views ?? 0) + 1
  const who = req.session.user
    ? `<p>Signed in as <b>${escape(req.session.user)}</b>.</p><form method="post" action="/logout"><button>Log out</button></form>`
    : `<form method="post" action="/login"><input name="user" placeholder="your name" required> <button>Log in</button></form>`
  res.send(page('coatcheck demo', `<p>You have viewed this page <b id="views">${req.session.views}</b> time(s) in this session.</p>${who}`))
})

app.post('/login', (req, res, next) => {
  const user = String(req.body.user ?? '').trim().slice(0, 64)
  if (!user) return res.status(400).send(page('Login', '<p>A name is required.</p>'))
  // A new session id at login (session fixation defence), keeping nothing from before.
  req.session.regenerate((err) => {
    if (err) return next(err)
    req.session.user = user
    req.session.since = new Date().toISOString()
    res.redirect(303, '/profile')
  })
})

app.get('/profile', async (req, res, next) => {
  if (!req.session.user) return res.status(401).send(page('Profile', '<p>Not signed in.</p>'))
  try {
    const devices = await store.sessionsOf(req.session.user)
    res.send(
      page(
        'Profile',
        `<p>Name: <b>${escape(req.session.user)}</b>, signed in since ${escape(req.session.since)}.</p>
<p>Session id: <code>${escape(req.sessionID)}</code>. Active sessions for this name: ${devices.length}.</p>
<p>Note: ${escape(req.session.note ?? '(none)')}</p>
<form method="post" action="/note"><input name="note" placeholder="a note kept in your session"> <button>Save</button></form>
<form method="post" action="/logout-others"><button>Log out my other sessions</button></form>
<form method="post" action="/logout"><button>Log out</button></form>`,
      ),
    )
  } catch (err) {
    next(err)
  }
})

// Saved now rather than at the end of the request, so that a note too large for a session gets
// a 413 page instead of an error, and the session keeps its previous note.
app.post('/note', (req, res, next) => {
  if (!req.session.user) return res.status(401).send(page('Note', '<p>Not signed in.</p>'))
  const previous = req.session.note
  req.session.note = String(req.body.note ?? '')
  req.session.save((err) => {
    if (err?.code === 'too_large') {
      if (previous === undefined) delete req.session.note
      else req.session.note = previous
      return res.status(413).send(page('Note', '<p>That note is too large for a session.</p>'))
    }
    if (err) return next(err)
    res.redirect(303, '/profile')
  })
})

app.post('/logout-others', async (req, res, next) => {
  if (!req.session.user) return res.redirect(303, '/')
  try {
    await store.destroyAllForOwner(req.session.user, req.sessionID)
    res.redirect(303, '/profile')
  } catch (err) {
    next(err)
  }
})

app.post('/logout', (req, res, next) => {
  req.session.destroy((err) => (err ? next(err) : res.redirect(303, '/')))
})

app.get('/stats', (req, res) => res.json(store.stats()))

// A request the app refuses (a form over express.urlencoded's 100 kB limit: 413) gets a page
// with its status; anything else is a server error, logged.
app.use((err, req, res, next) => {
  const status = err.status >= 400 && err.status < 500 ? err.status : 500
  if (status === 500) console.error(err)
  res.status(status).send(page(status === 413 ? 'Too large' : 'Error', `<p>${escape(err.expose ? err.message : 'Something went wrong.')}</p>`))
})

const server = app.listen(port, host, () => {
  const { port: bound } = server.address()
  console.log(`coatcheck demo listening on http://${host}:${bound} (Ctrl-C to stop)`)
})

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)))
