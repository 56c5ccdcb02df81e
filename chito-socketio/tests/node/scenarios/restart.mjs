// The server goes away under a connected client and comes back on the
// same port: the client notices, reconnects by itself and works again.
// The harness (tests/client_node.rs) waits for the line `connected 1`,
// shuts the first server down, binds the port again with a second one
// whose `generation` answers 2.
import { io, check, same, next, connected, step, scenario } from './lib.mjs';

scenario('restart', async () => {
  const socket = io(process.env.CHITO_URL, {
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    randomizationFactor: 0,
  });
  await connected(socket);
  const firstId = socket.id;

  await step('the first server answers generation 1', async () => {
    same(await socket.emitWithAck('generation'), 1, 'generation');
  });

  const disconnected = next(socket, 'disconnect', 15_000);
  // The harness reads this line, then restarts the server.
  console.log('connected 1');

  await step('the shutdown is seen as a transport close', async () => {
    const [reason] = await disconnected;
    check(reason === 'transport close' || reason === 'transport error', `disconnect reason ${reason}`);
  });

  await step('the client reconnects by itself', async () => {
    const reconnected = next(socket.io, 'reconnect', 15_000);
    await next(socket, 'connect', 15_000);
    const [attempt] = await reconnected;
    check(attempt >= 1, `reconnect attempt ${attempt}`);
    check(socket.connected, 'not connected after reconnect');
    check(socket.id !== firstId, 'the new server kept the old socket id');
  });

  await step('the second server answers generation 2', async () => {
    same(await socket.emitWithAck('generation'), 2, 'generation');
    socket.disconnect();
  });
}, 45_000);
