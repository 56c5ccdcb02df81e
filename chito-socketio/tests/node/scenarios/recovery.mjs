// Connection state recovery (docs/socketio.md §7), against a server built
// with `connection_state_recovery`: the client's Engine.IO connection is
// cut (`socket.io.engine.close()`), the server emits meanwhile (to the
// socket's room), and after the automatic reconnect the events arrive
// exactly once, `socket.recovered` is true, the socket id and its rooms
// are kept. A second cut longer than the recovery window must give
// `recovered` false.
//
// The server's handlers on `/` (not yet in tests/client_node.rs: the
// recovery API is being built on another branch): `join` room → join,
// ack the sorted rooms; `tick` from, to → emit `tick` k to room `r` for k
// in from..=to, then ack; `missed-while-away` from, to, delay_ms → ack at
// once, then after delay_ms emit `tick` k to room `r` for k in from..=to
// (and tell the test whether the socket was disconnected then).
// CHITO_RECOVERY_WINDOW_MS is the server's max disconnection duration.
import { io, check, same, next, connected, sleep, step, scenario } from './lib.mjs';

const URL = process.env.CHITO_URL;
const windowMs = Number(process.env.CHITO_RECOVERY_WINDOW_MS ?? '2000');

scenario('recovery', async () => {
  // The reconnection waits 1 s, so the server's emits 100 ms after the cut
// surely find the socket away.
const socket = io(URL, {
  forceNew: true, reconnectionDelay: 1_000, randomizationFactor: 0, transports: ['websocket'],
});
  const ticks = [];
  socket.on('tick', (n) => ticks.push(n));
  await connected(socket);
  check(socket.recovered === false, 'a first connection reports recovered');
  const firstId = socket.id;

  await step('joins room r and gets ticks 1-2', async () => {
    same(await socket.emitWithAck('join', 'r'), ['r'], 'rooms');
    await socket.emitWithAck('tick', 1, 2);
    await sleep(100);
    same(ticks, [1, 2], 'ticks before the cut');
  });

  await step('cut: ticks 3-5 emitted meanwhile arrive once after reconnect', async () => {
    // The server emits 3..5 to room r 100 ms after this ack, while we are away.
    await socket.emitWithAck('missed-while-away', 3, 5, 100);
    const back = next(socket, 'connect', 10_000);
    socket.io.engine.close();
    await back;
    check(socket.recovered === true, 'socket.recovered is false after a short cut');
    same(socket.id, firstId, 'socket id after recovery');
    await sleep(300);
    same(ticks, [1, 2, 3, 4, 5], 'ticks after recovery');
  });

  await step('rooms are kept: a new tick to r arrives', async () => {
    await socket.emitWithAck('tick', 6, 6);
    await sleep(100);
    same(ticks, [1, 2, 3, 4, 5, 6], 'ticks');
  });

  await step('a cut longer than the window: recovered false, new id', async () => {
    socket.io.reconnectionDelay(windowMs + 1_000);
    socket.io.reconnectionDelayMax(windowMs + 1_000);
    const back = next(socket, 'connect', windowMs + 10_000);
    socket.io.engine.close();
    await back;
    check(socket.recovered === false, 'recovered after the window');
    check(socket.id !== firstId, 'the id survived the window');
    socket.disconnect();
  });
}, 60_000);
