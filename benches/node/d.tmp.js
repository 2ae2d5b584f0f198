const { call, sessionOf, timeOps } = require('./common')
const { CoatcheckStore } = require('coatcheck')
const session = require('express-session')
;(async () => {
  const sess = sessionOf(200)
  const N = 20000
  for (const [name, mk] of [['coatcheck', () => new CoatcheckStore()], ['MemoryStore', () => new session.MemoryStore()]]) {
    const store = mk()
    const rates = { set: [], destroy: [], nativeDestroy: [], nativeSet: [] }
    for (let r = 0; r < 5; r++) {
      const ids = Array.from({ length: N }, (_, i) => `d-${r}-${i}`)
      rates.set.push(N / (await timeOps(ids, 64, (id) => call((cb) => store.set(id, sess, cb)))))
      rates.destroy.push(N / (await timeOps(ids, 64, (id) => call((cb) => store.destroy(id, cb)))))
      if (store.native) {
        const text = JSON.stringify(sess)
        let t = process.hrtime.bigint()
        for (const id of ids) store.native.set(id, text, 86400000)
        rates.nativeSet.push(N / (Number(process.hrtime.bigint() - t) / 1e9))
        t = process.hrtime.bigint()
        for (const id of ids) store.native.destroy(id)
        rates.nativeDestroy.push(N / (Number(process.hrtime.bigint() - t) / 1e9))
      }
    }
    const best = (xs) => (xs.length ? Math.round(Math.max(...xs)).toLocaleString('en') : '-')
    console.log(name, Object.entries(rates).map(([k, v]) => `${k} ${best(v)}`).join('  '))
  }
})()
