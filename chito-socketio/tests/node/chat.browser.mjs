// The Socket.IO chat (chito-socketio/examples/socketio_chat) in headless
// Chromium with the official browser bundle the example serves: two people
// chat in one room and see each other's lines and presence, a third in
// another room sees nothing, the WebSocket transport negotiated
// permessage-deflate (read from the handshake response through CDP's
// Network.webSocketHandshakeResponseReceived, and from the page's
// WebSocket), and a page kept on long-polling (`?transports=polling`)
// chats too. Usage (browser.sh runs it):
//
//   node chat.browser.mjs http://127.0.0.1:PORT/
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core
// only drives it and never downloads a browser.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const url = process.argv[2];
if (!url) {
  console.error('usage: node chat.browser.mjs <url of the chat page>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const screenshot = resolve(process.env.CHAT_SCREENSHOT_DIR ?? resolve(here, '..', '..', '..', 'target', 'browser'),
  'socketio_chat.png');
const WAIT = 10_000; // the longest any single expectation may take
const QUIET = 750;   // how long to watch for a message that must not come

const watchdog = setTimeout(() => {
  console.error('FAIL: the Socket.IO browser test took longer than 120 s');
  console.log('socketio-browser: 0 passed, 1 failed');
  process.exit(1);
}, 120_000);

let passed = 0;
let failed = 0;
async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    passed++;
    console.log(`ok   socketio_chat: ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed++;
    console.log(`FAIL socketio_chat: ${name}: ${error.message.split('\n')[0]}`);
    throw error;
  }
}

function fail(message) {
  throw new Error(message);
}

const pageErrors = [];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  timeout: 30_000,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
console.log(`chromium ${browser.version()}`);

async function person(who, query = '') {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${who} console: ${m.text()}`);
  });
  // The WebSocket handshakes as Chromium's network stack saw them.
  const handshakes = [];
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketHandshakeResponseReceived', ({ response }) => {
    const headers = Object.fromEntries(
      Object.entries(response.headers).map(([name, value]) => [name.toLowerCase(), value]));
    handshakes.push({ status: response.status, extensions: headers['sec-websocket-extensions'] ?? '' });
  });
  await page.goto(url + query, { timeout: WAIT });
  await page.waitForFunction(() => window.chat && window.chat.open, null, { timeout: WAIT })
    .catch(() => fail(`${who}'s page never connected`));
  return { who, context, page, handshakes };
}

async function join(p, name, room) {
  await p.page.fill('#name', name);
  await p.page.fill('#room', room);
  await p.page.click('#join');
  await p.page.waitForFunction((r) => window.chat.room === r, room, { timeout: WAIT })
    .catch(() => fail(`${p.who} never got into #${room}`));
}

const memberNames = (p) => p.page.$$eval('#members li', (items) => items.map((li) => li.dataset.name));

async function expectMembers(p, expected) {
  const want = [...expected].sort();
  try {
    await p.page.waitForFunction((w) => {
      const have = [...document.querySelectorAll('#members li')].map((li) => li.dataset.name).sort();
      return JSON.stringify(have) === JSON.stringify(w);
    }, want, { timeout: WAIT });
  } catch {
    fail(`${p.who} sees members ${JSON.stringify(await memberNames(p))}, expected ${JSON.stringify(want)}`);
  }
}

const messages = (p) => p.page.$$eval('#log .msg', (items) =>
  items.map((m) => ({ from: m.dataset.from, text: m.querySelector('.text').textContent })));

async function expectMessage(p, from, text) {
  try {
    await p.page.waitForFunction(([f, t]) =>
      [...document.querySelectorAll('#log .msg')].some((m) =>
        m.dataset.from === f && m.querySelector('.text').textContent === t), [from, text], { timeout: WAIT });
  } catch {
    fail(`${p.who} never saw ${from}: ${JSON.stringify(text)}; log: ${JSON.stringify(await messages(p))}`);
  }
}

async function say(p, text) {
  await p.page.fill('#text', text);
  await p.page.click('#send');
}

// Sends a raw event from the page and waits for the error note its ack
// brings.
async function expectError(p, event, payload, fragment) {
  const before = await p.page.evaluate(() => window.chat.errors.length);
  await p.page.evaluate(([e, data]) => window.chat.socket.emit(e, data, (answer) => {
    if (answer && answer.error) window.chat.errors.push(answer.error);
  }), [event, payload]);
  try {
    await p.page.waitForFunction(([n, f]) =>
      window.chat.errors.length > n && window.chat.errors[window.chat.errors.length - 1].includes(f),
    [before, fragment], { timeout: WAIT });
  } catch {
    fail(`no error containing ${JSON.stringify(fragment)} for ${event}; errors: ${JSON.stringify(
      await p.page.evaluate(() => window.chat.errors))}`);
  }
}

const transportOf = (p) => p.page.evaluate(() => window.chat.transport);

let status = 0;
const started = Date.now();
try {
  const alice = await person('Alice');
  const bob = await person('Bob');
  const carol = await person('Carol');
  const dan = await person('Dan', '?transports=polling');
  const hello = 'Hello Bob! Grüße, ça va? <b>not bold</b>';
  const reply = 'Hi Alice, loud and clear.';

  await step('Alice, Bob and Carol upgrade from polling to WebSocket; Dan stays on polling', async () => {
    for (const p of [alice, bob, carol]) {
      await p.page.waitForFunction(() => window.chat.transport === 'websocket', null, { timeout: WAIT })
        .catch(async () => fail(`${p.who} is on ${await transportOf(p)}`));
    }
    const danTransport = await transportOf(dan);
    if (danTransport !== 'polling') fail(`Dan is on ${danTransport}`);
    if (dan.handshakes.length !== 0) fail(`Dan's page opened ${dan.handshakes.length} WebSockets`);
  });

  await step('the WebSocket handshakes answered permessage-deflate (CDP and page)', async () => {
    for (const p of [alice, bob, carol]) {
      const upgrades = p.handshakes.filter((h) => h.status === 101);
      if (upgrades.length !== 1) fail(`${p.who}: ${JSON.stringify(p.handshakes)}`);
      if (!/^permessage-deflate\b/.test(upgrades[0].extensions)) {
        fail(`${p.who}'s Sec-WebSocket-Extensions: ${JSON.stringify(upgrades[0].extensions)}`);
      }
      const pageSide = await p.page.evaluate(() => window.chat.extensions);
      if (!/^permessage-deflate\b/.test(pageSide ?? '')) fail(`${p.who}'s ws.extensions: ${pageSide}`);
    }
  });

  await step('Alice and Bob join #lobby and see each other', async () => {
    await join(alice, 'Alice', 'lobby');
    await join(bob, 'Bob', 'lobby');
    await expectMembers(alice, ['Alice', 'Bob']);
    await expectMembers(bob, ['Alice', 'Bob']);
  });

  await step('Carol joins #other and is alone there', async () => {
    await join(carol, 'Carol', 'other');
    await expectMembers(carol, ['Carol']);
    await expectMembers(alice, ['Alice', 'Bob']);
  });

  await step('Alice speaks: Bob and Alice see it, as text', async () => {
    await say(alice, hello);
    await expectMessage(bob, 'Alice', hello);
    await expectMessage(alice, 'Alice', hello);
    const bold = await bob.page.$$eval('#log .msg b', (bs) => bs.some((b) => b.textContent === 'not bold'));
    if (bold) fail('message text was rendered as HTML');
  });

  await step('Bob replies: Alice sees it', async () => {
    await say(bob, reply);
    await expectMessage(alice, 'Bob', reply);
  });

  await step('Carol, in #other, sees no message and no #lobby member list', async () => {
    await carol.page.waitForTimeout(QUIET);
    const count = (await messages(carol)).length;
    if (count !== 0) fail(`Carol's log has ${count} messages`);
    await expectMembers(carol, ['Carol']);
  });

  await step('Dan, on polling, joins #lobby: everyone there sees three members', async () => {
    await join(dan, 'Dan', 'lobby');
    for (const p of [alice, bob, dan]) await expectMembers(p, ['Alice', 'Bob', 'Dan']);
    await expectMembers(carol, ['Carol']);
  });

  await step('Dan and the WebSocket pages chat both ways', async () => {
    await say(dan, 'Hi from long-polling 👋');
    await expectMessage(alice, 'Dan', 'Hi from long-polling 👋');
    await expectMessage(bob, 'Dan', 'Hi from long-polling 👋');
    await say(alice, 'Welcome, Dan!');
    await expectMessage(dan, 'Alice', 'Welcome, Dan!');
    if ((await transportOf(dan)) !== 'polling') fail('Dan left polling');
  });

  await step('bad input gets error answers and keeps the connection', async () => {
    await expectError(carol, 'join', { name: 'x'.repeat(33), room: 'lobby' }, 'name longer than 32');
    await expectError(carol, 'join', { name: 'Carol', room: 7 }, 'join needs');
    await expectError(carol, 'say', { text: '   ' }, 'empty message');
    await expectError(carol, 'say', { text: 'y'.repeat(1001) }, 'longer than 1000');
    await expectError(carol, 'say', 'not an object', 'say needs');
    if (!(await carol.page.evaluate(() => window.chat.socket.connected))) fail('Carol was disconnected');
    if ((await carol.page.evaluate(() => window.chat.room)) !== 'other') fail('bad input moved Carol');
    await expectMembers(alice, ['Alice', 'Bob', 'Dan']);
  });

  await step('a long message with a 4-byte character goes through (compressed)', async () => {
    const long = 'chito '.repeat(166) + 'ab👋';
    await say(bob, long);
    await expectMessage(alice, 'Bob', long);
    await expectMessage(dan, 'Bob', long);
  });

  await step("screenshot of Alice's page", async () => {
    mkdirSync(dirname(screenshot), { recursive: true });
    await alice.page.screenshot({ path: screenshot, fullPage: true });
    console.log(`     screenshot: ${screenshot}`);
  });

  await step("Bob closes his tab: the others' lists drop him", async () => {
    await bob.context.close();
    await expectMembers(alice, ['Alice', 'Dan']);
    await expectMembers(dan, ['Alice', 'Dan']);
  });

  await step('no page errors', async () => {
    if (pageErrors.length) fail(pageErrors.join('; '));
  });
} catch (error) {
  status = 1;
  if (failed === 0) {
    failed++;
    console.log(`FAIL socketio_chat: setup: ${error.message.split('\n')[0]}`);
  }
}
await browser.close().catch(() => {});
clearTimeout(watchdog);
console.log(`${failed ? 'FAIL' : 'PASS'} socketio_chat: chat in headless Chromium (${((Date.now() - started) / 1000).toFixed(1)} s)`);
console.log(`socketio-browser: ${passed} passed, ${failed} failed`);
process.exit(status || (failed ? 1 : 0));
