// Drives the browser chat in headless Chromium: three people in two rooms,
// messages, room switches, bad input, a closed tab, and the negotiated
// permessage-deflate. Usage:
//
//   node chat.test.mjs [LABEL=]http://127.0.0.1:PORT/ ...
//   node chat.test.mjs [LABEL=]http://127.0.0.1:PORT1/,http://127.0.0.1:PORT2/
//
// Each URL is a server of the same chat (examples/chat, and the axum one
// in chito-axum/examples/axum_chat): every one gets the whole scenario, in
// turn, in one browser (launching Chromium is the slow part). Two URLs
// joined by a comma are two nodes of one cluster
// (chito-backplane/examples/chat_node over one broker): a page on each
// chats with the other and sees it in the member list.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core
// only drives it and never downloads a browser.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const targets = process.argv.slice(2).map((arg, i) => {
  const [, label, target] = /^(?:([\w-]+)=)?(.*)$/.exec(arg);
  const urls = target.split(',');
  return { label: label ?? `server${i + 1}`, url: urls[0], urls };
});
if (targets.length === 0) {
  console.error('usage: node chat.test.mjs [LABEL=]<url of the chat page> ...');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
// One screenshot per server: <dir>/<label>.png.
const screenshotDir = process.env.CHAT_SCREENSHOT_DIR
  ?? resolve(here, '..', '..', 'target', 'browser');
const WAIT = 10_000; // the longest any single expectation may take
const QUIET = 750;   // how long to watch for a message that must not come

// The whole run is bounded even if something hangs outside a wait.
const watchdog = setTimeout(() => {
  console.error(`FAIL: the browser test took longer than ${120 * targets.length} s`);
  process.exit(1);
}, 120_000 * targets.length);

let passed = 0;
let failed = 0;
// The server under test; the helpers below read it.
let url = '';
let label = '';
async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    passed++;
    console.log(`ok   ${label}: ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed++;
    console.log(`FAIL ${label}: ${name}: ${error.message.split('\n')[0]}`);
    throw error;
  }
}

function fail(message) {
  throw new Error(message);
}

// This server's page errors (emptied for each server).
const pageErrors = [];
// This server's browser contexts, closed before the next server's.
const contexts = [];

async function person(browser, who, at = url) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${who} console: ${m.text()}`);
  });
  // Frames as Chromium's network layer saw them (after inflating).
  const frames = { sent: 0, received: 0 };
  page.on('websocket', (ws) => {
    ws.on('framesent', () => frames.sent++);
    ws.on('framereceived', () => frames.received++);
  });
  await page.goto(at, { timeout: WAIT });
  await page.waitForFunction(() => window.chat && window.chat.open, null, { timeout: WAIT });
  return { who, context, page, frames };
}

async function join(p, name, room) {
  await p.page.fill('#name', name);
  await p.page.fill('#room', room);
  await p.page.click('#join');
  await p.page.waitForFunction((r) => window.chat.room === r, room, { timeout: WAIT })
    .catch(() => fail(`${p.who} never got into #${room}`));
}

const memberNames = (p) =>
  p.page.$$eval('#members li', (items) => items.map((li) => li.dataset.name));

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

const messages = (p) =>
  p.page.$$eval('#log .msg', (items) =>
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

async function expectNoMessage(p, text) {
  const seen = (await messages(p)).filter((m) => m.text === text);
  if (seen.length) fail(`${p.who} saw ${JSON.stringify(text)}, which was not for their room`);
}

async function say(p, text) {
  await p.page.fill('#text', text);
  await p.page.click('#send');
}

async function expectError(p, raw, fragment) {
  const before = await p.page.$$eval('#log .note.error', (e) => e.length);
  await p.page.evaluate((data) => window.chat.ws.send(data), raw);
  try {
    await p.page.waitForFunction(([n, f]) => {
      const errors = [...document.querySelectorAll('#log .note.error')];
      return errors.length > n && errors[errors.length - 1].textContent.includes(f);
    }, [before, fragment], { timeout: WAIT });
  } catch {
    const errors = await p.page.$$eval('#log .note.error', (e) => e.map((x) => x.textContent));
    fail(`no error containing ${JSON.stringify(fragment)} for ${raw.slice(0, 60)}; errors: ${JSON.stringify(errors)}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  timeout: 30_000,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
console.log(`chromium ${browser.version()}`);

// The whole scenario against the server at `url`; throws at the first
// failed step.
async function scenario() {
  const screenshot = resolve(screenshotDir, `${label}.png`);
  const alice = await person(browser, 'Alice');
  const bob = await person(browser, 'Bob');
  const carol = await person(browser, 'Carol');
  const hello = 'Hello Bob! Grüße, ça va? <b>not bold</b>';
  const reply = 'Hi Alice, loud and clear.';

  await step('every page negotiated permessage-deflate', async () => {
    for (const p of [alice, bob, carol]) {
      const ext = await p.page.evaluate(() => window.chat.extensions);
      if (!/^permessage-deflate\b/.test(ext ?? '')) {
        fail(`${p.who}'s WebSocket extensions are ${JSON.stringify(ext)}`);
      }
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

  await step('Alice speaks: Bob and Alice see it', async () => {
    await say(alice, hello);
    await expectMessage(bob, 'Alice', hello);
    await expectMessage(alice, 'Alice', hello);
    const bold = await bob.page.$$eval('#log .msg b', (bs) => bs.some((b) => b.textContent === 'not bold'));
    if (bold) fail('message text was rendered as HTML');
  });

  await step('Bob replies: Alice sees it', async () => {
    await say(bob, reply);
    await expectMessage(alice, 'Bob', reply);
    await expectMessage(bob, 'Bob', reply);
  });

  await step('Carol, in #other, sees neither message', async () => {
    await carol.page.waitForTimeout(QUIET);
    await expectNoMessage(carol, hello);
    await expectNoMessage(carol, reply);
    const count = (await messages(carol)).length;
    if (count !== 0) fail(`Carol's log has ${count} messages`);
  });

  await step('bad input gets errors and keeps the connection', async () => {
    await expectError(carol, 'not json', 'not valid JSON');
    await expectError(carol, '{"type":"dance"}', 'unknown message type');
    await expectError(carol, '[1,2,3]', '"type" must be a string');
    await expectError(carol, JSON.stringify({ type: 'join', name: 'x'.repeat(33), room: 'lobby' }), 'name longer than 32');
    await expectError(carol, JSON.stringify({ type: 'join', name: 'Carol', room: 7 }), '"room" must be a string');
    await expectError(carol, JSON.stringify({ type: 'say', text: 'y'.repeat(1001) }), 'longer than 1000');
    const open = await carol.page.evaluate(() => window.chat.ws.readyState === WebSocket.OPEN);
    if (!open) fail('the connection closed after bad input');
    if ((await carol.page.evaluate(() => window.chat.room)) !== 'other') fail('bad input moved Carol');
    await expectMembers(alice, ['Alice', 'Bob']);
  });

  await step('Carol switches to #lobby: everyone sees three members', async () => {
    await join(carol, 'Carol', 'lobby');
    for (const p of [alice, bob, carol]) await expectMembers(p, ['Alice', 'Bob', 'Carol']);
  });

  await step('in #lobby Carol sees new messages, not old ones', async () => {
    await say(alice, 'Welcome, Carol!');
    await expectMessage(carol, 'Alice', 'Welcome, Carol!');
    await say(carol, 'Thanks! Came over from #other.');
    for (const p of [alice, bob, carol]) await expectMessage(p, 'Carol', 'Thanks! Came over from #other.');
    await expectNoMessage(carol, hello);
  });

  await step("screenshot of Alice's page", async () => {
    await alice.page.evaluate(() => { document.getElementById('log').scrollTop = 1e9; });
    mkdirSync(dirname(screenshot), { recursive: true });
    await alice.page.screenshot({ path: screenshot, fullPage: true });
    console.log(`     screenshot: ${screenshot}`);
  });

  await step('a long message with a 4-byte character goes through (compressed)', async () => {
    // 999 characters, 1000 UTF-16 units (the page's maxlength), 1002 bytes.
    const long = 'chito '.repeat(166) + 'ab👋';
    if ([...long].length !== 999 || long.length !== 1000) fail('bad test text');
    await say(bob, long);
    await expectMessage(alice, 'Bob', long);
    await expectMessage(carol, 'Bob', long);
  });

  await step("Bob closes his tab: the others' lists drop him", async () => {
    await bob.context.close();
    await expectMembers(alice, ['Alice', 'Carol']);
    await expectMembers(carol, ['Alice', 'Carol']);
  });

  await step('Chromium saw the frames and no page errors', async () => {
    if (alice.frames.received < 5 || alice.frames.sent < 2) {
      fail(`Alice's frames: ${JSON.stringify(alice.frames)}`);
    }
    if (pageErrors.length) fail(pageErrors.join('; '));
  });
}

// Two pages on two nodes of a cluster: the member list and the chat lines
// cross the broker, each line arrives once.
async function clusterScenario(urls) {
  const screenshot = resolve(screenshotDir, `${label}.png`);
  const alice = await person(browser, 'Alice', urls[0]);
  const bob = await person(browser, 'Bob', urls[1]);
  const hello = 'Hello from node 1! Grüße 👋';
  const reply = 'Hi Alice, node 2 here.';

  await step('each page is on its own node', async () => {
    const nodes = [];
    for (const [p, at] of [[alice, urls[0]], [bob, urls[1]]]) {
      const health = await p.page.evaluate(async (u) => (await fetch(`${u}health`)).json(), at);
      if (!health.ok || !health.broker_connected) fail(`${at}health: ${JSON.stringify(health)}`);
      nodes.push(health.node);
    }
    if (nodes[0] === nodes[1]) fail(`both pages on node ${nodes[0]}`);
  });

  await step('Bob (node 2), then Alice (node 1) join #lobby: each lists both', async () => {
    await join(bob, 'Bob', 'lobby');
    await expectMembers(bob, ['Bob']);
    await join(alice, 'Alice', 'lobby');
    await expectMembers(alice, ['Alice', 'Bob']);
    await expectMembers(bob, ['Alice', 'Bob']);
  });

  await step('Alice speaks on node 1: Bob sees it on node 2, both once', async () => {
    await say(alice, hello);
    await expectMessage(bob, 'Alice', hello);
    await expectMessage(alice, 'Alice', hello);
  });

  await step('Bob replies on node 2: Alice sees it on node 1, both once', async () => {
    await say(bob, reply);
    await expectMessage(alice, 'Bob', reply);
    await expectMessage(bob, 'Bob', reply);
    await alice.page.waitForTimeout(QUIET);
    for (const p of [alice, bob]) {
      for (const text of [hello, reply]) {
        const n = (await messages(p)).filter((m) => m.text === text).length;
        if (n !== 1) fail(`${p.who} saw ${JSON.stringify(text)} ${n} times`);
      }
      const lists = await p.page.$$eval('#members li', (items) => items.length);
      if (lists !== 2) fail(`${p.who}'s member list has ${lists} entries`);
    }
  });

  await step("screenshot of Alice's page", async () => {
    mkdirSync(dirname(screenshot), { recursive: true });
    await alice.page.screenshot({ path: screenshot, fullPage: true });
    console.log(`     screenshot: ${screenshot}`);
  });

  await step("Bob closes his tab: Alice's list on the other node drops him", async () => {
    await bob.context.close();
    await expectMembers(alice, ['Alice']);
  });

  await step('no page errors', async () => {
    if (pageErrors.length) fail(pageErrors.join('; '));
  });
}

let status = 0;
for (const target of targets) {
  ({ url, label } = target);
  pageErrors.length = 0;
  const started = Date.now();
  const failedBefore = failed;
  console.log(`-- ${label}: ${target.urls.join(' + ')}`);
  try {
    await (target.urls.length > 1 ? clusterScenario(target.urls) : scenario());
  } catch (error) {
    status = 1;
    if (failed === failedBefore) {
      failed++;
      console.log(`FAIL ${label}: setup: ${error.message.split('\n')[0]}`);
    }
  }
  // The next server starts from a browser with no pages open.
  await Promise.all(contexts.splice(0).map((c) => c.close().catch(() => {})));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const verdict = failed === failedBefore ? 'PASS' : 'FAIL';
  console.log(`${verdict} ${label}: chat in headless Chromium (${seconds} s)`);
}
await browser.close().catch(() => {});
clearTimeout(watchdog);
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(status || (failed ? 1 : 0));
