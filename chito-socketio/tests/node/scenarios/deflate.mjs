// permessage-deflate on the WebSocket transport: negotiated when the client
// offers it (engine.io-client in Node passes `perMessageDeflate` to `ws`,
// which offers it), not when it does not; large compressible messages
// both ways, with the bytes on the wire far below the message size.
import { io, check, same, connected, step, scenario } from './lib.mjs';

const URL = process.env.CHITO_URL;
// 600 KB of text that compresses well, under the 1 MB maxPayload.
const big = Array.from({ length: 12_000 }, (_, i) => `line ${i % 100}: chito speaks socket.io\n`).join('').slice(0, 600_000);

function ws(socket) {
  const transport = socket.io.engine.transport;
  same(transport.name, 'websocket', 'transport');
  return transport.ws;
}

scenario('deflate', async () => {
  await step('offered (threshold 0): negotiated, 600 KB both ways compressed', async () => {
    const socket = io(URL, {
      forceNew: true, reconnection: false, transports: ['websocket'],
      perMessageDeflate: { threshold: 0 },
    });
    await connected(socket);
    const raw = ws(socket);
    check(/^permessage-deflate\b/.test(raw.extensions), `extensions ${JSON.stringify(raw.extensions)}`);
    const readBefore = raw._socket.bytesRead;
    const writtenBefore = raw._socket.bytesWritten;
    const echoed = await socket.emitWithAck('echo', big);
    same(echoed.length, big.length, 'echo length');
    check(echoed === big, 'echo differs');
    const read = raw._socket.bytesRead - readBefore;
    const written = raw._socket.bytesWritten - writtenBefore;
    console.log(`     600 000 characters: ${written} bytes sent, ${read} bytes received`);
    check(read < big.length / 10, `the server's echo took ${read} bytes on the wire`);
    check(written < big.length / 10, `our message took ${written} bytes on the wire`);
    socket.disconnect();
  });

  await step('not offered: not negotiated, the same message still goes through', async () => {
    const socket = io(URL, {
      forceNew: true, reconnection: false, transports: ['websocket'],
      perMessageDeflate: false,
    });
    await connected(socket);
    const raw = ws(socket);
    same(raw.extensions, '', 'extensions');
    const readBefore = raw._socket.bytesRead;
    const echoed = await socket.emitWithAck('echo', big);
    check(echoed === big, 'echo differs');
    const read = raw._socket.bytesRead - readBefore;
    check(read > big.length, `uncompressed echo took only ${read} bytes`);
    socket.disconnect();
  });
});
