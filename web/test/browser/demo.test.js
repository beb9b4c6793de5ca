// The demo page and the client in real Chromium, against a real identityd
// and Redis that TestBrowser (browser_test.go) starts: run them with
// `go test -run TestBrowser ./web/` (or `npm run test:browser`). The access
// token lives 3 s, so "after expiry" is a short wait; every test has its own
// browser context (its own cookie jar, storage, Web Locks and
// BroadcastChannels).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { chromiumArgs, chromiumPath, missingPrerequisite, sleep, startStack, webDir } from './harness.js';

const ACCESS_TTL_MS = 3000;
const COOKIE = '__Host-identity_refresh';
const results = path.join(webDir, 'test-results');

const missing = missingPrerequisite();
if (missing && process.env.CI === 'true') throw new Error(`browser tests cannot run: ${missing} (CI=true: failing instead of skipping)`);

describe('demo in Chromium', { skip: missing ? `browser tests skipped: ${missing}` : false }, () => {
  /** @type {Awaited<ReturnType<typeof startStack>>} */
  let stack;
  /** @type {import('playwright-core').Browser} */
  let browser;

  before(async () => {
    stack = await startStack({ accessTTL: `${ACCESS_TTL_MS / 1000}s` });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
    mkdirSync(results, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    // Nothing secret in identityd's log (docs/configuration.md): the Go side checks it
    // for the password and for refresh tokens when identityd stops.
    await stack?.stop();
  });

  /**
   * A fresh context whose pages are watched: every request to identity is
   * recorded, and a page error or CSP violation fails the test.
   */
  async function newContext() {
    const context = await browser.newContext();
    /** @type {string[]} */
    const problems = [];
    context.on('page', (page) => {
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
      page.on('console', (msg) => {
        if (msg.type() === 'error' && /Content.Security.Policy|Trusted ?Type/i.test(msg.text())) problems.push(msg.text());
      });
    });
    const refreshCookie = async () => (await context.cookies(stack.api)).find((c) => c.name === COOKIE);
    return { context, problems, refreshCookie };
  }

  /** Index into the wire log: what reached identityd from then on. */
  const mark = () => stack.wire.length;
  /** Requests (not preflights) to path that reached identityd since the mark. */
  const onWire = (/** @type {string} */ p, since = 0) => stack.wire.slice(since).filter((r) => r.method !== 'OPTIONS' && r.path === p);
  const count = (/** @type {string} */ p, since = 0) => onWire(p, since).length;

  /** Waits until the text of selector is want. */
  async function expectText(page, selector, want, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    let got;
    for (;;) {
      got = ((await page.locator(selector).textContent()) ?? '').trim();
      if (got === want) return;
      if (Date.now() > deadline) assert.fail(`${selector}: ${JSON.stringify(got)}, want ${JSON.stringify(want)} within ${timeoutMs} ms`);
      await sleep(25);
    }
  }

  /** Opens the demo and logs alice in; returns the login's response. */
  async function openAndLogin(context) {
    const page = await context.newPage();
    await page.goto(stack.demo);
    await expectText(page, '#status', 'signed out');
    await page.fill('#username', 'alice');
    await page.fill('#password', stack.password);
    const login = page.waitForResponse((r) => r.url().endsWith('/v1/login'));
    await page.click('#login');
    const res = await login;
    await expectText(page, '#status', 'signed in as alice');
    return { page, res, at: Date.now() };
  }

  const untilExpired = (since) => sleep(Math.max(0, since + ACCESS_TTL_MS + 400 - Date.now()));

  test('log in: the refresh token is an HttpOnly cookie that page JavaScript cannot read', async () => {
    const { context, problems, refreshCookie } = await newContext();
    const { page, res } = await openAndLogin(context);

    const body = await res.json();
    assert.ok(body.access_token, 'the access token is in the body');
    assert.ok(!body.refresh_token, 'no refresh token in the body in cookie mode');
    const setCookie = (await res.headerValue('set-cookie')) ?? '';
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/', 'Max-Age=']) {
      assert.ok(setCookie.includes(attr), `Set-Cookie ${JSON.stringify(setCookie.replace(/=rt1\.[^;]*/, '=…'))} lacks ${attr}`);
    }
    const cookie = await refreshCookie();
    assert.ok(cookie, 'Chromium stored the Secure cookie from http://localhost');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.secure, true);
    assert.equal(cookie.sameSite, 'Strict');

    const visible = await page.evaluate(() => ({
      cookie: document.cookie,
      storage: JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)]),
    }));
    assert.equal(visible.cookie, '', 'document.cookie is empty');
    assert.ok(!visible.storage.includes(cookie.value), 'the refresh token is in web storage');
    assert.ok(!visible.storage.includes(body.access_token), 'the access token is in web storage');

    await page.screenshot({ path: path.join(results, 'demo-signed-in.png') });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('after expiry, 10 parallel calls: 10/10 ok and exactly one refresh on the wire', async () => {
    const { context, problems } = await newContext();
    const { page, at } = await openAndLogin(context);
    await untilExpired(at);

    const since = mark();
    await page.click('#call');
    await expectText(page, '#calls', 'ok 10/10');
    assert.equal(count('/v1/refresh', since), 1, 'refreshes on the wire');
    assert.equal(count('/v1/me', since), 10, 'calls on the wire (none needed a replay)');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('two tabs, both expired, both call at once: one refresh in all, session intact', async () => {
    const { context, problems } = await newContext();
    const { page: one, at } = await openAndLogin(context);
    const opened = mark();
    const two = await context.newPage();
    await two.goto(stack.demo);
    await expectText(two, '#status', 'signed in as alice');
    assert.equal(count('/v1/refresh', opened), 0, 'the second tab took the first tab\'s token');
    await untilExpired(at);

    const since = mark();
    await Promise.all([one.click('#call'), two.click('#call')]);
    await Promise.all([expectText(one, '#calls', 'ok 10/10'), expectText(two, '#calls', 'ok 10/10')]);
    assert.equal(count('/v1/refresh', since), 1, 'refreshes on the wire, both tabs together');
    assert.equal(count('/v1/me', since), 20);

    // No reuse detection fired: both tabs are signed in and the session
    // still refreshes.
    await expectText(one, '#status', 'signed in as alice');
    await expectText(two, '#status', 'signed in as alice');
    const status = await one.evaluate(async () => (await fetch('/v1/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Identity-Client': 'browser' }, body: '{}',
    })).status);
    assert.equal(status, 200);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('logout in one tab: the other shows signed out within a second, and its calls stop', async () => {
    const { context, problems, refreshCookie } = await newContext();
    const { page: one } = await openAndLogin(context);
    const two = await context.newPage();
    await two.goto(stack.demo);
    await expectText(two, '#status', 'signed in as alice');

    await one.click('#logout');
    const clicked = Date.now();
    await expectText(two, '#status', 'signed out', 1000);
    assert.ok(Date.now() - clicked < 1000);
    await expectText(one, '#status', 'signed out');
    assert.equal(await refreshCookie(), undefined, 'logout cleared the cookie');

    const since = mark();
    await two.click('#call');
    await expectText(two, '#calls', 'ok 0/10');
    await sleep(500);
    assert.equal(count('/v1/refresh', since), 0, 'no refresh after logout');
    assert.equal(count('/v1/me', since), 0, 'calls fail without a request');

    await one.screenshot({ path: path.join(results, 'demo-signed-out.png') });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('log out everywhere ends the session of another browser', async () => {
    const a = await newContext();
    const b = await newContext();
    const { page: pa } = await openAndLogin(a.context);
    const { page: pb } = await openAndLogin(b.context);

    await pa.click('#logout-all');
    await expectText(pa, '#status', 'signed out');
    const since = mark();
    await pb.click('#call');
    await expectText(pb, '#calls', 'ok 0/10');
    await expectText(pb, '#status', 'signed out');
    assert.equal(count('/v1/refresh', since), 0);
    assert.ok(onWire('/v1/me', since).every((r) => r.status === 401), 'the revoked token was refused');
    assert.deepEqual([...a.problems, ...b.problems], []);
    await a.context.close();
    await b.context.close();
  });

  test('a page on another origin of the same site cannot refresh or log out (CSRF), and CORS shuts it out', async () => {
    const { context, problems, refreshCookie } = await newContext();
    const { page: demo, at } = await openAndLogin(context);
    const before = await refreshCookie();

    const evil = await context.newPage();
    await evil.goto(stack.evilOrigin + '/');
    const since = mark();
    const outcome = await evil.evaluate(async (api) => {
      /** @type {Record<string, string | number>} */
      const out = {};
      const attempt = async (name, p) => {
        try {
          const res = await p;
          out[name] = res.type === 'opaque' ? 'opaque' : res.status;
        } catch {
          out[name] = 'blocked';
        }
      };
      // A "simple" request (no preflight): sent with the cookie, unreadable.
      await attempt('refresh', fetch(`${api}/v1/refresh`, { method: 'POST', credentials: 'include', body: '{}' }));
      await attempt('logout', fetch(`${api}/v1/logout`, { method: 'POST', mode: 'no-cors', credentials: 'include', body: '{}' }));
      // With the custom header: the preflight is refused, the POST never goes.
      await attempt('refresh with header', fetch(`${api}/v1/refresh`, {
        method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/json', 'X-Identity-Client': 'browser' }, body: '{}',
      }));
      await attempt('login', fetch(`${api}/v1/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"username":"alice","password":"x"}' }));
      return out;
    }, stack.api);
    assert.deepEqual(outcome, { refresh: 'blocked', logout: 'opaque', 'refresh with header': 'blocked', login: 'blocked' });

    const posts = stack.wire.slice(since).filter((r) => r.method === 'POST');
    assert.deepEqual(posts.map((r) => [r.path, r.status]), [['/v1/refresh', 403], ['/v1/logout', 403]],
      'only the two simple requests reached identity, and were refused');
    for (const r of posts) {
      assert.equal(r.origin, stack.evilOrigin);
      assert.ok(r.cookie, `${r.path} carried the refresh cookie (same site): a real CSRF attempt`);
    }
    const preflights = stack.wire.slice(since).filter((r) => r.method === 'OPTIONS');
    assert.ok(preflights.length >= 2 && preflights.every((r) => r.status === 403 && r.acao === ''), 'preflights refused without CORS headers');

    // A cross-origin form post (a top-level navigation) is refused too.
    const formAnswer = evil.waitForResponse((r) => r.url() === `${stack.api}/v1/logout` && r.request().method() === 'POST');
    await evil.evaluate(() => /** @type {HTMLFormElement} */ (document.getElementById('csrf')).submit());
    const form = await formAnswer;
    assert.equal(form.status(), 403);
    assert.equal((await form.json()).details[0].reason, 'CSRF_REJECTED');

    // The session was neither rotated nor ended: same cookie, and the demo
    // still refreshes and calls.
    const after = await refreshCookie();
    assert.equal(after?.value, before?.value);
    await untilExpired(at);
    const since2 = mark();
    await demo.click('#call');
    await expectText(demo, '#calls', 'ok 10/10');
    assert.equal(count('/v1/refresh', since2), 1);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('an allowlisted origin uses identity through CORS with the cookie', async () => {
    const { context, problems, refreshCookie } = await newContext();
    const page = await context.newPage();
    const since = mark();
    await page.goto(stack.allowedOrigin + '/');
    await page.waitForFunction(() => document.title === 'ready');
    const out = await page.evaluate(async ({ password, api }) => {
      const client = /** @type {any} */ (window).client;
      await client.login('alice', password);
      const signedIn = client.username;
      const token = await client.refresh();
      const me = await client.fetch(`${api}/v1/me`);
      await client.logout();
      return { signedIn, refreshed: typeof token === 'string' && token.length > 0, me: me.status, cookie: document.cookie, after: client.signedIn };
    }, { password: stack.password, api: stack.api }).catch((err) => ({ error: String(err) }));
    assert.equal(out.signedIn, 'alice', JSON.stringify(out));
    assert.equal(out.refreshed, true);
    assert.equal(out.me, 200);
    assert.equal(out.cookie, '');
    assert.equal(out.after, false);
    const answers = stack.wire.slice(since).filter((r) => r.method !== 'OPTIONS');
    assert.deepEqual(answers.map((r) => [r.method, r.path, r.status, r.acao]), [
      ['POST', '/v1/login', 200, stack.allowedOrigin],
      ['POST', '/v1/refresh', 200, stack.allowedOrigin],
      ['GET', '/v1/me', 200, stack.allowedOrigin],
      ['POST', '/v1/logout', 200, stack.allowedOrigin],
    ]);
    assert.ok(answers.find((r) => r.path === '/v1/refresh')?.cookie, 'the refresh went with the cookie');
    const preflights = stack.wire.slice(since).filter((r) => r.method === 'OPTIONS');
    assert.ok(preflights.length > 0 && preflights.every((r) => r.status === 204 && r.acao === stack.allowedOrigin));
    assert.equal(await refreshCookie(), undefined, 'logout cleared the cookie');
    assert.deepEqual(problems, []);
    await context.close();
  });
});
