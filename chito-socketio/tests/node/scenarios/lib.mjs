// What every scenario script shares: the server's URL, steps that print
// `ok <name>` and stop the script at the first failure, waiting for an
// event with a deadline, and a watchdog so a script always ends.
//
// tests/client_node.rs runs each script with CHITO_URL set to a server it
// started on 127.0.0.1:0 and asserts its exit code and output.
import { isDeepStrictEqual } from 'node:util';
import { io, Manager } from 'socket.io-client';

export { io, Manager };

export const URL = process.env.CHITO_URL;
if (!URL) {
  console.error('CHITO_URL is not set (run through cargo test -p chito-socketio --test client_node)');
  process.exit(2);
}

/** The longest a single expectation may take. */
export const WAIT = 5_000;
/** How long to watch for an event that must not come. */
export const QUIET = 300;

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Deep equality (object keys in any order, as JSON leaves them). */
export function same(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
}

/** Emits `event` with `args` and resolves with every argument of the ack. */
export function emitForAck(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT).emit(event, ...args, (error, ...answer) => {
      if (error) reject(new Error(`no ack for ${JSON.stringify(event)}: ${error.message}`));
      else resolve(answer);
    });
  });
}

/** The arguments of the next `event` on `emitter`, or a rejection after `ms`. */
export function next(emitter, event, ms = WAIT) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no ${JSON.stringify(event)} within ${ms} ms`));
    }, ms);
    const listener = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, listener);
  });
}

/** A connected socket (the `connect` event), or a rejection. */
export async function connected(socket, ms = WAIT) {
  if (socket.connected) return socket;
  const failure = next(socket, 'connect_error', ms).then(([error]) => {
    throw new Error(`connect_error: ${error.message}`);
  });
  await Promise.race([next(socket, 'connect', ms), failure]);
  return socket;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let steps = 0;
export async function step(name, body) {
  const started = Date.now();
  await body();
  steps++;
  console.log(`ok ${name} (${Date.now() - started} ms)`);
}

/**
 * Runs `main` under a watchdog of `limit` ms; prints `scenario NAME: done`
 * when every step passed (the Rust harness looks for it), else the error,
 * and exits with 0 or 1 (open sockets would otherwise keep node running).
 */
export function scenario(name, main, limit = 30_000) {
  const watchdog = setTimeout(() => {
    console.log(`FAIL ${name}: took longer than ${limit} ms`);
    process.exit(1);
  }, limit);
  main().then(
    () => {
      clearTimeout(watchdog);
      console.log(`scenario ${name}: done (${steps} steps)`);
      process.exit(0);
    },
    (error) => {
      clearTimeout(watchdog);
      console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
      process.exit(1);
    },
  );
}
