// The Node socket.io server of bench/benches/socketio.rs: socket.io's
// defaults except the handlers, which are the same in the Rust servers:
// - on connection to "/": join the room "bench";
// - "echo": acknowledge with the event's own arguments;
// - "fanout": emit "tick" with the event's argument to the room "bench".
// It listens on 127.0.0.1, port 0 (or argv[2]), and prints the port as its
// first stdout line, then serves until killed.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const io = new Server(httpServer);

io.on("connection", (socket) => {
  socket.join("bench");
  socket.on("echo", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") {
      ack(...args);
    }
  });
  socket.on("fanout", (seq) => {
    io.to("bench").emit("tick", seq);
  });
});

const port = Number(process.argv[2] || 0);
httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
