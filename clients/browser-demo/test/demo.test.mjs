// The browser demo in real headless Chromium (server/tests/clients.rs starts the cluster):
// two pages log in and chat, each sees the other's pushes live; one page's WebSocket is
// dropped for real (a proxy cuts it) and resumed without a new login, with the message it
// missed; a reloaded page takes its session back with the token it kept, and "Log out" ends
// it. Screenshots go to SCREENSHOT_DIR.
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "../../typescript/node_modules/playwright-core/index.mjs";
import { Proxy, cluster } from "../../typescript/test/proxy.mjs";
import { serve } from "../server.mjs";

const c = cluster();
const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (server/tests/clients.rs sets it)`);
  return value;
};
const [host, port] = need("DEMO_ADDR").split(":");
const shots = need("SCREENSHOT_DIR");
let browser, site, proxy;

before(async () => {
  site = await serve(Number(port), host);
  // The pages use the `origins:` listener, which lists this page's origin; Ada's goes through
  // a proxy the test can cut.
  proxy = await Proxy.start(c.origins_addr);
  browser = await chromium.launch({
    executablePath: need("CHROMIUM"),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  proxy?.close();
  site?.close();
});

async function open(user, ws) {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  page.on("console", (msg) => console.log(`[${user} console] ${msg.text()}`));
  page.on("pageerror", (error) => console.log(`[${user} pageerror] ${error.message}`));
  await page.goto(`http://${host}:${port}/?ws=${encodeURIComponent(ws)}`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  await page.fill("#username", user);
  await page.click("#login-button");
  await page.waitForSelector(`#who:has-text("logged in as ${user}")`, { timeout: 20_000 });
  return page;
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.click("#send");
}

const sees = (page, text) => page.waitForSelector(`#log li:has-text("${text}")`, { timeout: 20_000 });

test("two pages chat through pushes; a dropped WebSocket is resumed without a new login", async () => {
  const suffix = Date.now().toString(36);
  const ada = await open(`ada${suffix}`, `ws://127.0.0.1:${proxy.port}/`);
  const bob = await open(`bob${suffix}`, c.origins_ws);

  await say(ada, "hello from ada");
  await sees(bob, `ada${suffix}: hello from ada`);
  await sees(ada, `ada${suffix}: hello from ada`);
  await say(bob, "hi ada");
  await sees(ada, `bob${suffix}: hi ada`);
  const session = await ada.evaluate(() => window.demo.client.session.session);

  // Ada's connection drops at the network level and cannot come back for now.
  proxy.cut();
  await ada.waitForSelector("#status.reconnecting", { timeout: 20_000 });
  await say(bob, "while you were away");
  await sees(bob, `bob${suffix}: while you were away`);
  proxy.accept();
  await ada.waitForSelector('#status:has-text("resumed")', { timeout: 20_000 });
  await sees(ada, `bob${suffix}: while you were away`);
  assert.equal(await ada.evaluate(() => window.demo.client.session.session), session, "same session");
  assert.match(await ada.textContent("#status"), /1 missed push/);

  // Still logged in: no new login, the server knows who this is.
  assert.equal(await ada.isDisabled("#login-button"), true);
  await ada.click("#whoami");
  await sees(ada, `you are ada${suffix}`);
  await say(ada, "back again");
  await sees(bob, `ada${suffix}: back again`);

  await ada.screenshot({ path: path.join(shots, "demo.png"), fullPage: true });
  await bob.screenshot({ path: path.join(shots, "demo-bob.png"), fullPage: true });
});

test("a reloaded page restores its session with the stored token; log out ends it", async () => {
  const user = `cyd${Date.now().toString(36)}`;
  const cyd = await open(user, c.origins_ws);
  const session = await cyd.evaluate(() => window.demo.client.session.session);

  await cyd.reload();
  await cyd.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  const ticket = await cyd.evaluate(() => window.demo.client.session);
  assert.equal(ticket.session, session, "the same session after the reload");
  assert.equal(ticket.resumed, true);
  await cyd.waitForSelector(`#who:has-text("logged in as ${user}")`, { timeout: 20_000 });
  await cyd.click("#whoami");
  await sees(cyd, `you are ${user}`);
  await say(cyd, "after the reload");
  await sees(cyd, `${user}: after the reload`);
  // The next token is stored too: a second reload comes back as well.
  await cyd.reload();
  await cyd.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  assert.equal(await cyd.evaluate(() => window.demo.client.session.session), session);

  await cyd.click("#logout");
  await cyd.waitForSelector('#status:has-text("logged out")', { timeout: 20_000 });
  assert.equal(await cyd.evaluate(() => window.demo.client.state), "closed");
  // Nothing to restore any more: a reload starts a new session, logged out.
  await cyd.reload();
  await cyd.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  const fresh = await cyd.evaluate(() => window.demo.client.session);
  assert.notEqual(fresh.session, session);
  assert.equal(fresh.resumed, false);
  assert.equal(await cyd.textContent("#who"), "not logged in");
});
