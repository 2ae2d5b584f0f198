const { CoatcheckStore } = require('coatcheck')
const store = new CoatcheckStore()
const text = JSON.stringify({ cookie: { originalMaxAge: 86400000, httpOnly: true, path: '/' }, pad: 'x'.repeat(150) })
const N = 20000
const t0 = Date.now()
let n = 0
while (Date.now() - t0 < 6000) {
  const ids = Array.from({ length: N }, (_, i) => `d-${n}-${i}`)
  for (const id of ids) store.native.set(id, text, 86400000)
  for (const id of ids) store.native.destroy(id)
  n++
}
console.log(n * N / 6, 'set+destroy pairs/s')
