// One connection over the transport(s) named by CHITO_TRANSPORTS:
// `websocket` (WebSocket from the start), `polling` (long-polling only) or
// `default` (polling, then the upgrade to WebSocket). Events and acks go
// through before and after the upgrade.
import { io, check, same, next, connected, emitForAck, step, scenario } from './lib.mjs';

const mode = process.env.CHITO_TRANSPORTS ?? 'default';
const options = { forceNew: true, reconnection: false };
if (mode === 'websocket') options.transports = ['websocket'];
if (mode === 'polling') options.transports = ['polling'];

scenario(`transports-${mode}`, async () => {
  const socket = io(process.env.CHITO_URL, options);
  // Registered before connecting: the server emits `hello` on connect.
  const hello = next(socket, 'hello');

  await step('connects', async () => {
    await connected(socket);
    check(typeof socket.id === 'string' && socket.id.length > 0, `socket.id ${socket.id}`);
  });

  await step('the connect handler greets with our id', async () => {
    const [payload] = await hello;
    same(payload, { id: socket.id }, 'hello');
  });

  const engine = socket.io.engine;
  if (mode === 'default') {
    await step('starts on polling and upgrades to websocket', async () => {
      // engine.io-client starts with polling; the upgrade may already be done.
      if (engine.transport.name !== 'websocket') {
        const [transport] = await next(engine, 'upgrade');
        same(transport.name, 'websocket', 'upgraded transport');
      }
      same(engine.transport.name, 'websocket', 'transport after upgrade');
    });
  } else {
    await step(`stays on ${mode}`, async () => {
      same(engine.transport.name, mode, 'transport');
    });
  }

  await step('20 concurrent events are acked with their own arguments', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => emitForAck(socket, 'echo', i, { i, text: `n°${i} ✓` })),
    );
    answers.forEach((answer, i) => same(answer, [i, { i, text: `n°${i} ✓` }], `echo ${i}`));
  });

  await step('emitWithAck resolves with the first ack argument', async () => {
    same(await socket.emitWithAck('echo', 'first', 'second'), 'first', 'emitWithAck');
  });

  await step('a server-side emit reaches us', async () => {
    const pushed = next(socket, 'pushed');
    socket.emit('push-me', 'please');
    same(await pushed, ['please'], 'pushed');
  });

  await step('disconnects cleanly', async () => {
    const gone = next(socket, 'disconnect');
    socket.disconnect();
    same((await gone)[0], 'io client disconnect', 'reason');
  });
});
