'use strict'

const http = require('node:http')
const net = require('node:net')

// A tiny cookie-jar HTTP client over fetch, for driving real servers on 127.0.0.1.

class Client {
  constructor(base) {
    this.base = base
    this.cookies = new Map()
  }

  async request(method, path, body) {
    const headers = {}
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    })
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';')
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      const expired = attributes.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a))
      if (expired || value === '') this.cookies.delete(name)
      else this.cookies.set(name, value)
      this.lastSetCookie = line
    }
    const text = await res.text()
    let json
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: res.status, json, text, headers: res.headers }
  }

  get(path) {
    return this.request('GET', path)
  }

  post(path, body) {
    return this.request('POST', path, body ?? {})
  }
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`))
  })
}

// Serves `handler` (an Express app, say) on 127.0.0.1 for the length of `body(base)`.
async function withHttp(handler, body) {
  const server = http.createServer(handler)
  const base = await listen(server)
  try {
    return await body(base)
  } finally {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
}

// A request held in flight: `loaded` resolves once the handler has called `arrived()`, and the
// handler's `await held` waits until the test calls `release()`.
function holdInFlight() {
  let arrived, release
  const loaded = new Promise((resolve) => (arrived = resolve))
  const held = new Promise((resolve) => (release = resolve))
  return { arrived, loaded, held, release }
}

// A GET whose Cookie header is `cookie`'s raw bytes, over a socket of its own: fetch refuses
// the bytes a browser or an attacker can still send (NUL, invalid UTF-8). Resolves to the
// status and the body.
function rawGet(base, path, cookie) {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname)
    const chunks = []
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')))
    socket.on('connect', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\nCookie: `)
      socket.write(Buffer.concat([Buffer.from(cookie), Buffer.from('\r\n\r\n')]))
    })
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1])
      let json
      try {
        json = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))
      } catch {}
      resolve({ status, json })
    })
  })
}

// Cookie values of every class of bad input, for the cookie named `name`; `real` is a valid
// cookie value of a live session (forged and tampered ones are built from it).
function badCookies(name, real) {
  const tampered = real.slice(0, -3) + (real.endsWith('A') ? 'BBB' : 'AAA')
  return [
    ['empty', `${name}=`],
    ['huge (8 kB)', `${name}=${'A'.repeat(8000)}`],
    ['non-ASCII', Buffer.from(`${name}=s%3Aé.ü€`, 'utf8')],
    ['invalid UTF-8', Buffer.concat([Buffer.from(`${name}=s%3A`), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('.x')])],
    ['NUL byte', Buffer.from(`${name}=s%3Aab\0cd.ef`, 'latin1')],
    ['forged signature', `${name}=${real.slice(0, real.lastIndexOf('.'))}.forgedsignature`],
    ['tampered', `${name}=${tampered}`],
  ]
}

module.exports = { Client, listen, withHttp, holdInFlight, rawGet, badCookies }
