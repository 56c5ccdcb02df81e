// A cross-check of the bench's servers with the official client
// (socket.io-client, over WebSocket only, as the bench's Rust driver
// connects): two clients connect to "/", "echo" is acknowledged with its
// own argument, and one client's "fanout" reaches both as "tick".
//
//   node check-client.js PORT      # prints "ok" and exits 0, or exits 1
//
// Servers: `node server.js`, or the bench binary as a server, e.g.
//   CHITO_SIO_SERVER=socketioxide target/release/deps/socketio-<hash>
// (each prints its port on its first line).
"use strict";

const { io } = require("socket.io-client");

const port = Number(process.argv[2]);
if (!port) {
  console.error("usage: node check-client.js PORT");
  process.exit(2);
}
const url = `http://127.0.0.1:${port}`;
const payload = "0123456789abcdef0123456789ABCDEF";
const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(1);
}, 5000);

function connect() {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

async function main() {
  const a = await connect();
  const b = await connect();
  const echoed = await a.emitWithAck("echo", payload);
  if (echoed !== payload) {
    throw new Error(`echo acknowledged with ${JSON.stringify(echoed)}`);
  }
  const ticks = [a, b].map(
    (s) => new Promise((resolve) => s.once("tick", resolve)),
  );
  a.emit("fanout", 7);
  const got = await Promise.all(ticks);
  if (got.some((seq) => seq !== 7)) {
    throw new Error(`ticks ${JSON.stringify(got)}`);
  }
  a.disconnect();
  b.disconnect();
  clearTimeout(timer);
  console.log("ok");
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
