'use strict'

// `npm install` runs this: it checks that the package's native addon loads on this machine, and
// otherwise stops the install with what to do, rather than failing later at `require`.
// In the repository checkout (Rust sources present) `make build-node` builds the addon instead.

const fs = require('node:fs')
const path = require('node:path')

if (fs.existsSync(path.join(__dirname, 'src', 'lib.rs'))) process.exit(0)

try {
  require('./native.js')
} catch (error) {
  console.error(require('./no-addon.js').noAddonMessage(error))
  process.exit(1)
}
