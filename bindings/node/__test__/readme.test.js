'use strict'

// The README's quick start, extracted from README.md as written, run as a real Express app.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { Client, withHttp } = require('./helpers')

function quickStart() {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const match = readme.match(/<!-- quickstart[^>]*-->\n```js\n([\s\S]*?)\n```/)
  assert.ok(match, 'README.md has a quick start block')
  const module = { exports: {} }
  const requireFromReadme = (name) => require(name === 'coatcheck' ? '..' : name)
  new Function('require', 'module', match[1])(requireFromReadme, module)
  return module.exports
}

test("the README's quick start: login, your devices, log out the others, logout", async () => {
  await withHttp(quickStart(), async (base) => {
    const laptop = new Client(base)
    const phone = new Client(base)
    await laptop.post('/login', { userId: 42 })
    await phone.post('/login', { userId: 42 })
    const devices = (await laptop.get('/devices')).json
    assert.equal(devices.all.length, 2)
    assert.ok(devices.all.includes(devices.current))
    assert.equal((await laptop.post('/devices/logout-others')).json.destroyed, 1)
    assert.deepEqual((await laptop.get('/devices')).json.all, [devices.current])
    assert.equal((await phone.get('/devices')).status, 401, 'the phone is logged out')
    await laptop.post('/logout')
    assert.equal((await laptop.get('/devices')).status, 401)
  })
})
