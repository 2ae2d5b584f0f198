'use strict'

// A real Debian redis-server for the shared-tier tests and the Node benchmarks: a free
// 127.0.0.1 port, no persistence, stopped by PID (also when the process exits). A missing
// redis-server fails the test (make test installs it).

const { spawn, execFileSync } = require('node:child_process')
const net = require('node:net')

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

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

async function startRedis() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' })
  } catch {
    throw new Error('redis-server is missing: apt-get install redis-server (make test does)')
  }
  const port = await freePort()
  // setpriv (util-linux) execs redis-server with a parent-death signal: a test run that is
  // killed outright (SIGKILL skips the 'exit' handler below) leaves no server behind.
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'redis-server', ...args], { stdio: 'ignore' })
  const killAtExit = () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')
  process.once('exit', killAtExit)
  const deadline = Date.now() + 10000
  while (!(await canConnect(port))) {
    if (Date.now() > deadline) throw new Error('redis-server did not start')
    await new Promise((r) => setTimeout(r, 10))
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    pid: child.pid,
    pause: () => process.kill(child.pid, 'SIGSTOP'),
    resume: () => process.kill(child.pid, 'SIGCONT'),
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', resolve)
        process.kill(child.pid, 'SIGCONT')
        child.kill('SIGKILL')
      }),
  }
}

module.exports = { startRedis, freePort }
