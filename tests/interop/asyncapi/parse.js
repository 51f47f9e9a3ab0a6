// Parse an AsyncAPI document with @asyncapi/parser and print what a tool sees, as JSON:
//   node parse.js PARSER_DIR asyncapi.yaml
// {"diagnostics": [{severity, code, message}], "messages": {id: {contentType, schemaFormat}}}
'use strict';
const path = require('path');
const { Parser, fromFile } = require(path.join(process.argv[2], 'node_modules', '@asyncapi', 'parser'));

(async () => {
  const { document, diagnostics } = await fromFile(new Parser(), process.argv[3]).parse();
  const out = {diagnostics: diagnostics.map(d => ({severity: d.severity, code: d.code, message: d.message})),
               messages: {}};
  if (document) {
    for (const message of document.allMessages()) {
      const payload = message.payload();
      out.messages[message.id()] = {contentType: message.contentType(),
                                    schemaFormat: payload ? payload.schemaFormat() : null};
    }
  }
  process.stdout.write(JSON.stringify(out));
})().catch((err) => { process.stderr.write(String(err) + '\n'); process.exit(2); });
