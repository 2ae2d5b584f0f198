'use strict'

// The README's main command runs examples/express/server.js: start it on a free port on
// 127.0.0.1, walk through counter, login, profile and logout, then stop it.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const fs = require('node:fs')
const os = require('node:os')
const { spawn } = require('node:child_process')
const { Client } = require('./helpers')

const demoDir = path.join(__dirname, '..', '..', '..', 'examples', 'express')
const needsDeps = { skip: !fs.existsSync(path.join(demoDir, 'node_modules')) && 'run `make demo-deps` first' }

// Starts the demo on a free port with its restart log in `persistPath`; resolves to the child
// and its base URL.
function startDemo(persistPath) {
  const child = spawn(process.execPath, ['server.js'], {
    cwd: demoDir,
    env: { ...process.env, PORT: '0', COATCHECK_PERSIST_PATH: persistPath },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('demo did not start within 10 s')), 10_000)
    child.stdout.on('data', (chunk) => {
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(chunk.toString())
      if (m) {
        clearTimeout(timer)
        resolve({ child, base: m[1] })
      }
    })
    child.once('exit', (code) => reject(new Error(`demo exited with ${code}`)))
  })
}

// A form post with `user`'s cookies, not following the redirect.
async function postForm(user, base, route, body) {
  const response = await fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: [...user.cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
    body,
    redirect: 'manual',
  })
  return { status: response.status, text: await response.text(), headers: response.headers }
}

async function login(user, base, name) {
  const response = await postForm(user, base, '/login', `user=${name}`)
  assert.equal(response.status, 303)
  const [pair] = response.headers.getSetCookie()[0].split(';')
  user.cookies.set(pair.split('=')[0], pair.slice(pair.indexOf('=') + 1))
}

function killed(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', resolve)
    child.kill('SIGKILL')
  })
}

test('the demo app counts views, logs in and out', needsDeps, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coatcheck-demo-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const { child, base } = await startDemo(path.join(dir, 'sessions'))
  try {
    const user = new Client(base)
    assert.match((await user.get('/')).text, /<b id="views">1<\/b>/)
    assert.match((await user.get('/')).text, /<b id="views">2<\/b>/)
    await login(user, base, 'zoe')
    const profile = await user.get('/profile')
    assert.equal(profile.status, 200)
    assert.match(profile.text, /Name: <b>zoe<\/b>/)
    assert.match(profile.text, /Active sessions for this name: 1/)
    assert.equal((await user.get('/stats')).json.sessions, 1)
    await user.post('/logout')
    assert.equal((await user.get('/profile')).status, 401)
  } finally {
    await killed(child)
  }
})

test('a note too large for a session gets a 413 and leaves the session as it was', needsDeps, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coatcheck-demo-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const { child, base } = await startDemo(path.join(dir, 'sessions'))
  try {
    const user = new Client(base)
    await login(user, base, 'ann')
    assert.equal((await postForm(user, base, '/note', 'note=first+note')).status, 303)
    assert.match((await user.get('/profile')).text, /Note: first note/)
    // Over the demo's 64 KiB maxSessionBytes, under express.urlencoded's 100 kB body limit: the
    // store refuses it.
    const big = await postForm(user, base, '/note', `note=${'x'.repeat(70_000)}`)
    assert.equal(big.status, 413)
    assert.match(big.text, /too large for a session/)
    const profile = await user.get('/profile')
    assert.equal(profile.status, 200)
    assert.match(profile.text, /Name: <b>ann<\/b>/)
    assert.match(profile.text, /Note: first note/)
  } finally {
    await killed(child)
  }
})

test('a user logged in to the demo stays logged in after it is killed and started again', needsDeps, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coatcheck-demo-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const persistPath = path.join(dir, 'sessions')
  const first = await startDemo(persistPath)
  const zoe = new Client(first.base)
  const bob = new Client(first.base)
  try {
    await login(zoe, first.base, 'zoe')
    // Each view rewrites the session; the log keeps the later ones as the bytes they changed.
    assert.match((await zoe.get('/')).text, /<b id="views">1<\/b>/)
    assert.match((await zoe.get('/')).text, /<b id="views">2<\/b>/)
    await login(bob, first.base, 'bob')
    await bob.post('/logout')
  } finally {
    // No clean shutdown: what the log held when the process died is all there is.
    await killed(first.child)
  }
  const second = await startDemo(persistPath)
  try {
    zoe.base = second.base
    bob.base = second.base
    const profile = await zoe.get('/profile')
    assert.equal(profile.status, 200)
    assert.match(profile.text, /Name: <b>zoe<\/b>/)
    assert.match((await zoe.get('/')).text, /<b id="views">3<\/b>/)
    // Logged out before the kill: still logged out.
    assert.equal((await bob.get('/profile')).status, 401)
  } finally {
    await killed(second.child)
  }
})
