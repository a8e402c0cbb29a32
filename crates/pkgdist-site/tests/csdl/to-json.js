// Reads CSDL XML on stdin and writes the OASIS reader's CSDL JSON on stdout.
// Strict: an element or attribute CSDL 4.0 does not allow is a message, and any message
// fails (exit 1, messages on stderr), so the test sees what the reader objected to.
"use strict";
const { xml2json } = require("odata-csdl");

let xml = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => (xml += d));
process.stdin.on("end", () => {
  const messages = [];
  let json;
  try {
    json = xml2json(xml, { strict: true, messages });
  } catch (e) {
    process.stderr.write(`not CSDL: ${e.message}\n`);
    process.exit(1);
  }
  if (messages.length > 0) {
    process.stderr.write(JSON.stringify(messages, null, 1) + "\n");
    process.exit(1);
  }
  process.stdout.write(JSON.stringify(json));
});
