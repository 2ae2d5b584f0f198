'use strict'

const http = require('node:http')

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

module.exports = { Client, listen, withHttp, holdInFlight }
