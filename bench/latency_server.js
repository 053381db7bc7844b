// A Graph API stand-in with Meta's latency: answers every request with the Cloud API's success JSON after
// DELAY_MS milliseconds. HTTP/1.1 keep-alive on plain http; with CERT and KEY, TLS with HTTP/2 and HTTP/1.1
// (ALPN), so an HTTP/2 client can be compared with an HTTP/1.1 one on the same server.
// Prints the port it listens on (127.0.0.1 only) as its first line. Run pinned: taskset -c 1 node ...
"use strict";
const fs = require("fs");
const delay = Number(process.env.DELAY_MS || "200");
const body = Buffer.from(
  '{"messaging_product":"whatsapp","contacts":[{"input":"15551234567","wa_id":"15551234567"}],' +
    '"messages":[{"id":"wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QUNFQjQ1RDBFRkM2MkY3QTUA"}]}'
);
const headers = { "content-type": "application/json", "content-length": String(body.length) };
let served = 0;

function handle(req, res) {
  // drain the request body, then answer after the delay
  req.on("data", () => {});
  req.on("end", () => {
    setTimeout(() => {
      served += 1;
      res.writeHead(200, headers);
      res.end(body);
    }, delay);
  });
}

let server;
if (process.env.CERT && process.env.KEY) {
  const http2 = require("http2");
  server = http2.createSecureServer(
    {
      cert: fs.readFileSync(process.env.CERT),
      key: fs.readFileSync(process.env.KEY),
      allowHTTP1: true,
      settings: { maxConcurrentStreams: 1000 },
    },
    handle
  );
} else {
  const http = require("http");
  server = http.createServer({ keepAliveTimeout: 60000, maxRequestsPerSocket: 0 }, handle);
  server.keepAliveTimeout = 60000;
  server.headersTimeout = 65000;
  server.requestTimeout = 0;
}
server.maxConnections = 10000;
server.listen(0, "127.0.0.1", 4096, () => {
  process.stdout.write(server.address().port + "\n");
});
process.stdin.on("end", () => process.exit(0)); // the parent closed our stdin: stop
process.stdin.resume();
process.on("SIGTERM", () => process.exit(0));
