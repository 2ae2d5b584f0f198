'use strict'

// What to say when no native addon loads on this machine: at install and at `require`.

function noAddonMessage(cause) {
  const first = String(cause?.message ?? cause).split('\n')[0]
  return [
    `coatcheck: no native addon for ${process.platform}-${process.arch} loads here.`,
    'The npm package ships a prebuilt addon for x86_64 Linux (glibc) only.',
    'To build one for this machine, clone the coatcheck repository, run `make build-node`',
    '(needs a Rust toolchain with cargo, and a C compiler), then install from that',
    'directory: npm install /path/to/coatcheck/bindings/node',
    `Cause: ${first}`,
  ].join('\n')
}

module.exports = { noAddonMessage }
