'use strict'

// The README's main command runs examples/express/server.js: start it on a free port on
// 127.0.0.1, walk through counter, login, profile and logout, then stop it.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const fs = require('node:fs')
const { spawn } = require('node:child_process')
const { Client } = require('./helpers')

const demoDir = path.join(__dirname, '..', '..', '..', 'examples', 'express')

test('the demo app counts views, logs in and out', { skip: !fs.existsSync(path.join(demoDir, 'node_modules')) && 'run `make demo-deps` first' }, async () => {
  const child = spawn(process.execPath, ['server.js'], { cwd: demoDir, env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const base = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('demo did not start within 10 s')), 10_000)
      child.stdout.on('data', (chunk) => {
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(chunk.toString())
        if (m) {
          clearTimeout(timer)
          resolve(m[1])
        }
      })
      child.once('exit', (code) => reject(new Error(`demo exited with ${code}`)))
    })
    const user = new Client(base)
    assert.match((await user.get('/')).text, /<b id="views">1<\/b>/)
    assert.match((await user.get('/')).text, /<b id="views">2<\/b>/)
    const login = await fetch(`${base}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: [...user.cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
      body: 'user=zoe',
      redirect: 'manual',
    })
    assert.equal(login.status, 303)
    const [pair] = login.headers.getSetCookie()[0].split(';')
    user.cookies.set(pair.split('=')[0], pair.slice(pair.indexOf('=') + 1))
    const profile = await user.get('/profile')
    assert.equal(profile.status, 200)
    assert.match(profile.text, /Name: <b>zoe<\/b>/)
    assert.match(profile.text, /Active sessions for this name: 1/)
    assert.equal((await user.get('/stats')).json.sessions, 1)
    await user.post('/logout')
    assert.equal((await user.get('/profile')).status, 401)
  } finally {
    child.kill('SIGTERM')
  }
})
