// Binary both ways: Buffers and ArrayBuffers nested in objects and arrays,
// several attachments per packet, in events and acks.
import { io, check, same, next, connected, step, scenario } from './lib.mjs';

const transports = process.env.CHITO_TRANSPORTS === 'polling' ? ['polling'] : ['websocket'];

function bytes(n, seed) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function isBytes(value, expected, what) {
  check(Buffer.isBuffer(value), `${what} is ${Object.prototype.toString.call(value)}, not a Buffer`);
  check(value.equals(expected), `${what}: ${value.length} bytes differ from the ${expected.length} expected`);
}

scenario(`binary-${transports[0]}`, async () => {
  const socket = io(process.env.CHITO_URL, { forceNew: true, reconnection: false, transports });
  await connected(socket);
  const file = bytes(70_000, 1);
  const partA = bytes(3, 2);
  const partB = bytes(0, 3);
  const partC = bytes(1_000, 4);

  await step('an upload with 4 attachments (Buffer, ArrayBuffers) is read by the server', async () => {
    const upload = {
      name: 'photo.bin',
      file,
      nested: {
        parts: [
          partA.buffer.slice(partA.byteOffset, partA.byteOffset + partA.length),
          partB,
          new Uint8Array(partC).buffer,
        ],
        meta: { tags: ['a', 'b'], size: file.length },
      },
    };
    const answer = await socket.emitWithAck('upload', upload);
    // The server answers with what it read: sizes, and checksums computed
    // the same way as here.
    const sum = (b) => b.reduce((acc, x) => (acc * 31 + x) % 1_000_000_007, 7);
    same(answer, {
      name: 'photo.bin',
      sizes: [file.length, partA.length, partB.length, partC.length],
      sums: [sum(file), sum(partA), sum(partB), sum(partC)],
      tags: ['a', 'b'],
      declared: file.length,
    }, 'server summary');
  });

  await step('the server sends 3 attachments in nested objects', async () => {
    const download = next(socket, 'download');
    socket.emit('give', 5_000);
    const [payload, extra] = await download;
    same(payload.label, 'three blobs', 'label');
    isBytes(payload.first, bytes(5_000, 9), 'first');
    same(payload.inner.list.length, 2, 'inner list length');
    isBytes(payload.inner.list[0], Buffer.from([1, 2, 3]), 'inner.list[0]');
    isBytes(payload.inner.list[1], Buffer.alloc(0), 'inner.list[1]');
    same(extra, 'second argument', 'second argument');
  });

  await step('an ack carrying binary comes back', async () => {
    const [reversed, length] = await new Promise((resolve) => {
      socket.emit('reverse', Buffer.from('chito 👋'), (...args) => resolve(args));
    });
    isBytes(reversed, Buffer.from('chito 👋').reverse(), 'reversed');
    same(length, Buffer.byteLength('chito 👋'), 'length');
  });

  await step('received binary arguments are forwarded as they came', async () => {
    const echoed = next(socket, 'echo');
    const blobs = [bytes(10, 5), bytes(20, 6)];
    socket.emit('echo', { a: blobs[0] }, 'text', [blobs[1]]);
    const args = await echoed;
    same(args.length, 3, 'argument count');
    isBytes(args[0].a, blobs[0], 'arg 0 .a');
    same(args[1], 'text', 'arg 1');
    isBytes(args[2][0], blobs[1], 'arg 2 [0]');
    socket.disconnect();
  });
});
