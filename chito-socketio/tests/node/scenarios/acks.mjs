// Acknowledgements both ways: the client's emitWithAck (and callbacks with
// `timeout`), an event the server never answers, and the server's
// emit_with_ack answered (or not) by the client's callback.
import { io, check, same, next, connected, step, scenario } from './lib.mjs';

scenario('acks', async () => {
  const socket = io(process.env.CHITO_URL, { forceNew: true, reconnection: false });
  // The server's questions, answered from here.
  socket.on('question', (q, callback) => callback({ color: 'blue', q }));
  // Asked, never answered: the server's own timeout must fire.
  socket.on('question-ignored', () => {});
  await connected(socket);

  await step('emitWithAck gets the handler answer', async () => {
    same(await socket.emitWithAck('sum', 2, 3), 5, 'sum 2 3');
    same(await socket.emitWithAck('sum', -40, 2), -38, 'sum -40 2');
  });

  await step('a callback with timeout gets (null, answer)', async () => {
    const [error, answer] = await new Promise((resolve) => {
      socket.timeout(2_000).emit('sum', 20, 22, (...args) => resolve(args));
    });
    same([error, answer], [null, 42], 'callback arguments');
  });

  await step('an ack with several arguments keeps them all', async () => {
    const all = await new Promise((resolve) => {
      socket.emit('many', (...args) => resolve(args));
    });
    same(all, [1, 'two', { three: [3] }, null], 'ack arguments');
  });

  await step('timeout(300).emitWithAck of an unanswered event rejects', async () => {
    const started = Date.now();
    let rejected = null;
    try {
      await socket.timeout(300).emitWithAck('no-answer', 'hello?');
    } catch (error) {
      rejected = error;
    }
    check(rejected !== null, 'emitWithAck resolved although the server never answers');
    same(rejected.message, 'operation has timed out', 'rejection');
    const took = Date.now() - started;
    check(took >= 290 && took < 2_000, `rejected after ${took} ms`);
  });

  await step("the server's emit_with_ack gets our callback's answer", async () => {
    const answer = next(socket, 'answer');
    socket.emit('ask-me');
    same(await answer, [{ color: 'blue', q: { q: 'color?' } }], 'what the server got back');
  });

  await step("the server's emit_with_ack times out when we never answer", async () => {
    const outcome = next(socket, 'ask-outcome');
    socket.emit('ask-me-ignored');
    same(await outcome, ['timeout'], 'server outcome');
  });

  await step('the connection still works', async () => {
    same(await socket.emitWithAck('sum', 1, 1), 2, 'sum 1 1');
    socket.disconnect();
  });
});
