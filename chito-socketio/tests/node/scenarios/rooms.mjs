// Rooms: four clients, Ann and Ben in `red`, Cy in `blue`, Di in none.
// Each emit variant reaches exactly its recipients: to(room) without the
// sender, within(room) with it, except(room), broadcast, io.to(room), and
// nothing after leaving.
import { io, same, connected, sleep, step, scenario, QUIET, WAIT } from './lib.mjs';

const URL = process.env.CHITO_URL;

scenario('rooms', async () => {
  const names = ['ann', 'ben', 'cy', 'di'];
  const people = {};
  for (const name of names) {
    const socket = io(URL, { forceNew: true, reconnection: false, transports: ['websocket'] });
    const log = [];
    socket.onAny((event, ...args) => log.push([event, ...args]));
    people[name] = { socket, log };
  }
  await Promise.all(names.map((n) => connected(people[n].socket)));

  // Clears every log, runs `action`, waits until each expected recipient
  // has one event, then a quiet moment, and checks every log exactly.
  async function expectDelivery(action, event, payload, recipients) {
    for (const n of names) people[n].log.length = 0;
    await action();
    const deadline = Date.now() + WAIT;
    while (recipients.some((n) => people[n].log.length === 0) && Date.now() < deadline) {
      await sleep(10);
    }
    await sleep(QUIET);
    for (const n of names) {
      same(people[n].log, recipients.includes(n) ? [[event, payload]] : [], `${n}'s events`);
    }
  }

  await step('ann and ben join red, cy joins blue (acks list the rooms)', async () => {
    // chito lists the rooms joined (docs/socketio.md §5: no room per
    // socket id, which the JS server adds to socket.rooms).
    same(await people.ann.socket.emitWithAck('join', 'red'), ['red'], 'ann rooms');
    same(await people.ben.socket.emitWithAck('join', 'red'), ['red'], 'ben rooms');
    same(await people.cy.socket.emitWithAck('join', 'blue'), ['blue'], 'cy rooms');
    same(await people.cy.socket.emitWithAck('join', 'extra'), ['blue', 'extra'], 'cy rooms');
    same(await people.cy.socket.emitWithAck('leave', 'extra'), ['blue'], 'cy rooms');
  });

  await step('to(red) from ann reaches ben only', async () => {
    await expectDelivery(() => people.ann.socket.emit('to', 'red', 'hi red'), 'said', 'hi red', ['ben']);
  });

  await step('within(red) from ann reaches ann and ben', async () => {
    await expectDelivery(() => people.ann.socket.emit('within', 'red', 'all red'), 'said', 'all red', ['ann', 'ben']);
  });

  await step('except(red) from cy reaches di only', async () => {
    await expectDelivery(() => people.cy.socket.emit('except', 'red', 'not red'), 'said', 'not red', ['di']);
  });

  await step('broadcast from di reaches ann, ben and cy', async () => {
    await expectDelivery(() => people.di.socket.emit('broadcast', 'everyone'), 'said', 'everyone', ['ann', 'ben', 'cy']);
  });

  await step('io.to(blue) from ann reaches cy only', async () => {
    await expectDelivery(() => people.ann.socket.emit('io-to', 'blue', 'to blue'), 'said', 'to blue', ['cy']);
  });

  await step('io.to(red).except(blue) from di, ben also in blue: ann only', async () => {
    same(await people.ben.socket.emitWithAck('join', 'blue'), ['blue', 'red'], 'ben rooms');
    await expectDelivery(
      () => people.di.socket.emit('io-to-except', 'red', 'blue', 'red minus blue'),
      'said', 'red minus blue', ['ann'],
    );
    same(await people.ben.socket.emitWithAck('leave', 'blue'), ['red'], 'ben rooms');
  });

  await step('after ben leaves red, to(red) from ann reaches nobody', async () => {
    same(await people.ben.socket.emitWithAck('leave', 'red'), [], 'ben rooms');
    await expectDelivery(() => people.ann.socket.emit('to', 'red', 'anyone?'), 'said', 'anyone?', []);
  });

  await step('a disconnected member leaves its rooms', async () => {
    people.ann.socket.disconnect();
    await sleep(QUIET);
    await expectDelivery(() => people.cy.socket.emit('io-to', 'red', 'gone?'), 'said', 'gone?', []);
    for (const n of ['ben', 'cy', 'di']) people[n].socket.disconnect();
  });
});
