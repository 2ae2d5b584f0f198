'use strict'

// The HTTP load of the cluster benchmarks: autocannon, each request carrying the next of the
// pre-created session cookies in turn. A module of its own (autocannon only, no coatcheck) so
// that the Python benchmark can drive its gunicorn servers with the same client, as a
// command: `node load.js < options.json` prints autocannon's result as one JSON line.

const autocannon = require('autocannon')

// options: { port, method, path, cookies, connections, duration } (duration in seconds).
function load({ port, method = 'GET', path, cookies, connections = 32, duration = 10 }) {
  let next = 0
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections,
        duration,
        requests: [
          {
            method,
            path,
            setupRequest: (req) => ({ ...req, headers: { ...req.headers, cookie: cookies[next++ % cookies.length] } }),
          },
        ],
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    )
  })
}

if (require.main === module) {
  let input = ''
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (chunk) => (input += chunk))
  process.stdin.on('end', () =>
    load(JSON.parse(input)).then(
      (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
      (err) => {
        console.error(err)
        process.exit(1)
      },
    ),
  )
}

module.exports = { load }
