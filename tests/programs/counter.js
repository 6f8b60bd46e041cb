// A Node.js workload for stasis' end-to-end tests: a timer counting in the event loop, served on
// a unix socket.
//
// Usage: node counter.js SOCKET. Starts a 10 ms interval timer that counts its ticks and keeps a
// buffer of 1 MiB filled from a seed, listens on SOCKET and prints READY. Each connection carries
// one line and gets one line back, then the server closes it: `add N` adds N to a running total
// and answers the total; `state` answers the tick count, the buffer's checksum and the pid;
// `verify` waits for five more ticks (the timer still runs), checks the buffer and answers PASS or
// FAIL: ..., prints the same and exits (0 on PASS).
"use strict";
const net = require("net");
const crypto = require("crypto");

const path = process.argv[2];
const buffer = Buffer.alloc(1 << 20);
for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 2654435761) >>> 24;
const digest = () => crypto.createHash("sha256").update(buffer).digest("hex").slice(0, 16);
const atStart = digest();
let ticks = 0;
let total = 0;
setInterval(() => { ticks += 1; }, 10);

function verify(conn) {
  const from = ticks;
  const wait = setInterval(() => {
    if (ticks < from + 5) return;
    clearInterval(wait);
    const now = digest();
    const reply = now === atStart ? "PASS" : `FAIL: buffer checksum ${now}, was ${atStart}`;
    conn.end(reply + "\n", () => {
      console.log(reply);
      process.exit(reply === "PASS" ? 0 : 1);
    });
  }, 10);
}

const server = net.createServer((conn) => {
  let text = "";
  conn.on("data", (chunk) => {
    text += chunk;
    if (!text.includes("\n")) return;
    const line = text.split("\n")[0].trim();
    if (line.startsWith("add ")) {
      total += Number(line.slice(4));
      conn.end(`${total}\n`);
    } else if (line === "state") {
      conn.end(`${ticks} ${digest()} ${process.pid}\n`);
    } else if (line === "verify") {
      verify(conn);
    } else {
      conn.end(`FAIL: unknown request ${JSON.stringify(line)}\n`);
    }
  });
});
server.listen(path, () => console.log("READY"));
