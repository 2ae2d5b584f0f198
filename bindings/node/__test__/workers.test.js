'use strict'

// Stores with the same `name` share one table across worker_threads of one process.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Worker } = require('node:worker_threads')
const path = require('node:path')
const { CoatcheckStore } = require('..')

const packageDir = path.join(__dirname, '..')

function runWorker(source, workerData) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(source, { eval: true, workerData })
    const timer = setTimeout(() => {
      worker.terminate()
      reject(new Error('worker timed out'))
    }, 10_000)
    worker.once('message', (m) => {
      clearTimeout(timer)
      resolve(m)
      worker.terminate()
    })
    worker.once('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
  })
}

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads')
const { CoatcheckStore } = require(workerData.packageDir)
const store = new CoatcheckStore({ name: workerData.name })
;(async () => {
  const seen = await store.get(workerData.read)
  await store.set(workerData.write, { cookie: {}, from: 'worker' })
  parentPort.postMessage({ seen })
})()
`

test('two worker threads and the main thread share sessions through name', async () => {
  const name = `workers-${process.pid}`
  const main = new CoatcheckStore({ name })
  await main.set('from-main', { cookie: {}, from: 'main' })
  const first = await runWorker(workerSource, { packageDir, name, read: 'from-main', write: 'from-w1' })
  assert.equal(first.seen.from, 'main')
  const second = await runWorker(workerSource, { packageDir, name, read: 'from-w1', write: 'from-w2' })
  assert.equal(second.seen.from, 'worker')
  assert.equal((await main.get('from-w2')).from, 'worker')
  assert.equal(await main.length(), 3)
})

test('an unnamed store in a worker is its own table', async () => {
  const main = new CoatcheckStore()
  await main.set('private', { cookie: {} })
  const src = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { CoatcheckStore } = require(workerData.packageDir)
    new CoatcheckStore().get('private').then((seen) => parentPort.postMessage({ seen }))
  `
  assert.equal((await runWorker(src, { packageDir })).seen, null)
})
