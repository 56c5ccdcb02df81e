// Disconnect reasons on both sides: the client leaves (server: `client
// namespace disconnect`), the server disconnects a socket (client: `io
// server disconnect`, no reconnection), the client closes its Engine.IO
// connection (server: `transport close`). The harness checks the
// server's reasons; this checks the client's.
import { io, check, same, next, connected, sleep, step, scenario } from './lib.mjs';

const URL = process.env.CHITO_URL;
const options = { forceNew: true, reconnectionDelay: 100, transports: ['websocket'] };

scenario('disconnect', async () => {
  await step('socket.disconnect(): io client disconnect', async () => {
    const socket = io(URL, { ...options, query: { who: 'leaver' } });
    await connected(socket);
    const gone = next(socket, 'disconnect');
    socket.disconnect();
    same((await gone)[0], 'io client disconnect', 'client reason');
  });

  await step('the server disconnects us: io server disconnect, no reconnection', async () => {
    const socket = io(URL, { ...options, query: { who: 'kicked' } });
    await connected(socket);
    const gone = next(socket, 'disconnect');
    socket.emit('kick-me');
    same((await gone)[0], 'io server disconnect', 'client reason');
    let reconnecting = false;
    socket.io.on('reconnect_attempt', () => { reconnecting = true; });
    await sleep(500);
    check(!reconnecting && !socket.connected, 'the client reconnected after a server disconnect');
    socket.close();
  });

  await step('engine.close(): the client sees a forced close', async () => {
    const socket = io(URL, { ...options, reconnection: false, query: { who: 'closer' } });
    await connected(socket);
    const gone = next(socket, 'disconnect');
    socket.io.engine.close();
    const [reason] = await gone;
    check(reason === 'forced close' || reason === 'transport close', `client reason ${reason}`);
  });

  // Let the server see the last close before the harness looks.
  await sleep(300);
});
