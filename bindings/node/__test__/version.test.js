'use strict'

// One version for every package: package.json must match the Cargo workspace.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

test('package.json has the workspace version', () => {
  const cargo = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'Cargo.toml'), 'utf8')
  const section = cargo.slice(cargo.indexOf('[workspace.package]'))
  const workspaceVersion = /^version\s*=\s*"([^"]+)"/m.exec(section)[1]
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'))
  assert.equal(pkg.version, workspaceVersion)
})
