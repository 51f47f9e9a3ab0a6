// libmbus (through node-mbus) as the M-Bus master of the interop tests, over TCP.
//   node libmbus_master.js NODE_MBUS_DIR HOST PORT TIMEOUT_MS data ADDRESS...
//   node libmbus_master.js NODE_MBUS_DIR HOST PORT TIMEOUT_MS scan-secondary
// Prints one JSON document on stdout: {"ADDRESS": {"data": ...} | {"error": "..."}} for data,
// {"secondary": [...]} or {"error": "..."} for the scan. ADDRESS is a primary address (0..250) or
// a 16-hex-digit secondary address (id, manufacturer, version, medium).
'use strict';
const path = require('path');
const [dir, host, port, timeout, op, ...addresses] = process.argv.slice(2);
const MbusMaster = require(path.join(dir, 'node_modules', 'node-mbus'));
const master = new MbusMaster({host, port: Number(port), timeout: Number(timeout), autoConnect: true});

async function main() {
  const out = {};
  if (op === 'scan-secondary') {
    try {
      out.secondary = await master.scanSecondaryAsync();
    } catch (err) {
      out.error = String(err);
    }
  } else if (op === 'data') {
    for (const address of addresses) {
      const target = /^\d+$/.test(address) ? Number(address) : address;
      try {
        out[address] = {data: await master.getDataAsync(target)};
      } catch (err) {
        out[address] = {error: String(err)};
      }
    }
  } else {
    throw new Error('unknown op ' + op);
  }
  await master.closeAsync();
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => { process.stderr.write(String(err) + '\n'); process.exit(2); });
