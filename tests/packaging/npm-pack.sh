#!/usr/bin/env bash
# The npm package as users get it: `npm pack` of bindings/node installed into a fresh Express
# app outside the repository, driven over HTTP; and the same tarball without its prebuilt addon
# (a platform it has none for) must stop the install with a message that says what to do.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
npm_install() { npm install --no-audit --no-fund --loglevel=error "$@"; }

(cd "$repo/bindings/node" && npm pack --silent --pack-destination "$work" >/dev/null)
tarball="$(ls "$work"/coatcheck-*.tgz)"
tar tzf "$tarball" > "$work/files"
for f in package/README.md package/LICENSE-MIT package/LICENSE-APACHE package/index.d.ts package/install.js; do
  grep -qx "$f" "$work/files" || { echo "npm-pack: $f missing from the package" >&2; exit 1; }
done

mkdir "$work/app"
cd "$work/app"
echo '{ "name": "fresh-app", "private": true }' > package.json
npm_install "$tarball" express@5 express-session@1
cat > app.js <<'JS'
const express = require('express')
const session = require('express-session')
const { CoatcheckStore, generateId } = require('coatcheck')

const app = express()
app.use(session({ secret: 'fresh app', store: new CoatcheckStore(), genid: generateId, resave: false, saveUninitialized: false }))
app.get('/count', (req, res) => res.json({ views: (req.session.views = (req.session.views ?? 0) + 1) }))
const server = app.listen(0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${server.address().port}`
  const first = await fetch(`${base}/count`, { signal: AbortSignal.timeout(5000) })
  const cookie = first.headers.get('set-cookie').split(';')[0]
  const second = await fetch(`${base}/count`, { headers: { cookie }, signal: AbortSignal.timeout(5000) })
  const views = [(await first.json()).views, (await second.json()).views]
  server.close()
  if (views.join() !== '1,2') throw new Error(`expected views 1,2, got ${views}`)
  console.log('npm-pack: the packed store serves a fresh Express app')
})
JS
node app.js

# The same package without a prebuilt addon: the install must stop and say what to do.
mkdir "$work/bare" "$work/no-addon"
tar xzf "$tarball" -C "$work/bare"
rm "$work"/bare/package/*.node
tar czf "$work/coatcheck-no-addon.tgz" -C "$work/bare" package
cd "$work/no-addon"
echo '{ "name": "other-platform-app", "private": true }' > package.json
if npm_install "$work/coatcheck-no-addon.tgz" > install.log 2>&1; then
  echo "npm-pack: the install without an addon succeeded; it must stop with a message" >&2
  exit 1
fi
grep -q "no native addon for" install.log && grep -q "make build-node" install.log || {
  echo "npm-pack: the failed install did not say what to do:" >&2
  cat install.log >&2
  exit 1
}
echo "npm-pack: without an addon, the install stops and says what to do"
