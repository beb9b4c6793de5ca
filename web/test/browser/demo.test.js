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
  async function newContext(/** @type {import('playwright-core').BrowserContextOptions} */ options = {}) {
    const context = await browser.newContext(options);
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

  /** Opens the demo and logs a user in (alice unless given); returns the login's response. */
  async function openAndLogin(context, username = 'alice', password = stack.password) {
    const page = await context.newPage();
    await page.goto(stack.demo);
    await expectText(page, '#status', 'signed out');
    await page.fill('#username', username);
    await page.fill('#password', password);
    const login = page.waitForResponse((r) => r.url().endsWith('/v1/login'));
    await page.click('#login');
    const res = await login;
    await expectText(page, '#status', `signed in as ${username}`);
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
    // The first tab answers the new one's hello within milliseconds; the
    // long wait only keeps a loaded machine from making it look otherwise.
    await two.goto(stack.demo + '?hello=3000');
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

  // --- the account: devices and password --------------------------------

  // Each device is a browser context of its own (its own cookie, its own
  // session) with the User-Agent of a real browser, so the list names them.
  const LAPTOP = { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36' };
  const PHONE = {
    userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
    viewport: { width: 375, height: 740 },
    isMobile: true,
    hasTouch: true,
  };
  const DESKTOP_FIREFOX = { userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0' };

  /**
   * The devices list as the page shows it, once it is loaded and has n
   * entries.
   */
  async function devices(page, n, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = await page.$$eval('#sessions[aria-busy="false"] > li', (lis) => lis.map((li) => {
        const text = (sel) => li.querySelector(sel)?.textContent?.trim() ?? '';
        const time = (sel) => {
          const t = li.querySelector(`${sel} time`);
          return { text: t?.textContent ?? '', title: t?.getAttribute('title') ?? '', datetime: t?.getAttribute('datetime') ?? '' };
        };
        return {
          id: /** @type {HTMLElement} */ (li).dataset.sessionId ?? '',
          device: text('.device'),
          badge: text('.badge'),
          current: li.classList.contains('current'),
          address: text('.address'),
          created: time('.created'),
          lastUsed: time('.last-used'),
          revoke: !!li.querySelector('button.revoke'),
        };
      }));
      if (list.length === n) return list;
      if (Date.now() > deadline) assert.fail(`the devices list has ${list.length} entries, want ${n}: ${JSON.stringify(list)}`);
      await sleep(25);
    }
  }

  /** Saves a screenshot; at a phone's width, checks the page does not scroll sideways. */
  async function shot(page, name) {
    await page.screenshot({ path: path.join(results, name), fullPage: true });
    const { scrollWidth, innerWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
    assert.ok(scrollWidth <= innerWidth, `${name}: the page is ${scrollWidth} px wide in a ${innerWidth} px viewport`);
  }

  /** Waits until the text of selector matches re. */
  async function expectMatch(page, selector, re, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    let got;
    for (;;) {
      got = ((await page.locator(selector).textContent()) ?? '').trim();
      if (re.test(got)) return got;
      if (Date.now() > deadline) assert.fail(`${selector}: ${JSON.stringify(got)}, want ${re} within ${timeoutMs} ms`);
      await sleep(25);
    }
  }

  /**
   * The answers among requests, leaving out a 401 TOKEN_EXPIRED: an access
   * token that expired on its way (tokens live 3 s here) is refreshed and
   * the call replayed, by the client, as designed.
   */
  const answered = (/** @type {typeof stack.wire} */ requests) => requests.filter((r) => r.reason !== 'TOKEN_EXPIRED');
  /** POSTs to a revoke path that reached identityd since the mark, as answered. */
  const revokes = (since) => answered(stack.wire.slice(since).filter((r) => r.method === 'POST' && /^\/v1\/me\/sessions\/[^/]+\/revoke$/.test(r.path)));

  const SIGNED_OUT_REMOTELY = 'This device was signed out: its session was ended from another device, by a password change, or it expired.';

  test('devices: two browsers list each other, "this device" on the right one; signing the other out ends it', async () => {
    const user = stack.users.names[0];
    const laptop = await newContext(LAPTOP);
    const phone = await newContext(PHONE);
    const { page: pl } = await openAndLogin(laptop.context, user, stack.users.password);
    const { page: pp } = await openAndLogin(phone.context, user, stack.users.password);

    // The phone signed in second: its list has both at once; the laptop's
    // shows the phone after a refresh.
    const onPhone = await devices(pp, 2);
    await pl.click('#sessions-refresh');
    const onLaptop = await devices(pl, 2);
    const view = (list) => list.map((d) => [d.device, d.badge, d.current, d.revoke]);
    assert.deepEqual(view(onLaptop), [['Chrome on Linux', 'this device', true, false], ['Safari on iPhone', '', false, true]]);
    assert.deepEqual(view(onPhone), [['Safari on iPhone', 'this device', true, false], ['Chrome on Linux', '', false, true]]);
    assert.deepEqual(onLaptop.map((d) => d.id), onPhone.map((d) => d.id).reverse(), 'the same two sessions');
    for (const d of [...onLaptop, ...onPhone]) {
      assert.equal(d.address, '127.0.0.1');
      for (const t of [d.created, d.lastUsed]) {
        assert.match(t.text, /^(just now|\d+ seconds ago)$/, 'a relative time in words');
        assert.match(t.title, /\d{4}/, 'the exact time in the title');
        assert.ok(Math.abs(Date.parse(t.datetime) - Date.now()) < 60_000, `datetime ${t.datetime}`);
      }
    }
    assert.equal(await pl.locator('#revoke-others').isEnabled(), true);
    await shot(pl, 'demo-devices.png');
    await shot(pp, 'demo-devices-phone.png');

    // The laptop signs the phone out.
    const phoneId = onLaptop[1].id;
    const since = mark();
    await pl.click(`#sessions > li[data-session-id="${phoneId}"] button.revoke`);
    await expectText(pl, '#sessions-done', 'Safari on iPhone (127.0.0.1) was signed out.');
    const left = await devices(pl, 1);
    assert.deepEqual(view(left), [['Chrome on Linux', 'this device', true, false]]);
    assert.equal(await pl.locator('#revoke-others').isDisabled(), true, 'no other device to sign out');
    assert.equal(await pl.locator('#sessions-alone').isVisible(), true);
    assert.deepEqual(revokes(since).map((r) => [r.path, r.status]), [[`/v1/me/sessions/${phoneId}/revoke`, 200]]);

    // The phone's next call fails, and the phone says why.
    const next = mark();
    await pp.click('#sessions-refresh');
    await expectText(pp, '#status', 'signed out');
    await expectText(pp, '#notice', SIGNED_OUT_REMOTELY);
    assert.equal(await pp.locator('#account').isHidden(), true);
    assert.equal(await pp.locator('#login-form').isVisible(), true);
    const refused = stack.wire.slice(next).filter((r) => r.method !== 'OPTIONS');
    assert.ok(refused.length > 0 && refused.every((r) => r.status === 401), `the phone's session was refused: ${JSON.stringify(refused)}`);
    await shot(pp, 'demo-signed-out-remotely-phone.png');

    await expectText(pl, '#status', `signed in as ${user}`);
    assert.deepEqual([...laptop.problems, ...phone.problems], []);
    await laptop.context.close();
    await phone.context.close();
  });

  test('sign out everywhere else: one revocation per other device, and only this one is left', async () => {
    const user = stack.users.names[1];
    const laptop = await newContext(LAPTOP);
    const phone = await newContext(PHONE);
    const desktop = await newContext(DESKTOP_FIREFOX);
    const { page: pl } = await openAndLogin(laptop.context, user, stack.users.password);
    const { page: pp } = await openAndLogin(phone.context, user, stack.users.password);
    const { page: pd } = await openAndLogin(desktop.context, user, stack.users.password);
    await pl.click('#sessions-refresh');
    const before = await devices(pl, 3);
    assert.deepEqual(before.map((d) => d.device).sort(), ['Chrome on Linux', 'Firefox on Windows', 'Safari on iPhone']);

    const since = mark();
    await pl.click('#revoke-others');
    await expectText(pl, '#sessions-done', 'Signed out 2 other devices.');
    const after = await devices(pl, 1);
    assert.deepEqual(after.map((d) => [d.device, d.badge]), [['Chrome on Linux', 'this device']]);
    assert.deepEqual(revokes(since).map((r) => r.status), [200, 200], 'one call for each other device');
    assert.deepEqual(revokes(since).map((r) => r.path).sort(), before.filter((d) => !d.current).map((d) => `/v1/me/sessions/${d.id}/revoke`).sort());
    await expectText(pl, '#sessions-error', '');
    await shot(pl, 'demo-signed-out-everywhere-else.png');

    for (const page of [pp, pd]) {
      await page.click('#call');
      await expectText(page, '#calls', 'ok 0/10');
      await expectText(page, '#status', 'signed out');
      await expectText(page, '#notice', SIGNED_OUT_REMOTELY);
    }
    // This device goes on.
    await pl.click('#call');
    await expectText(pl, '#calls', 'ok 10/10');
    assert.deepEqual([...laptop.problems, ...phone.problems, ...desktop.problems], []);
    for (const c of [laptop, phone, desktop]) await c.context.close();
  });

  test('change password: a wrong current password is a sentence; the right one signs the other device out, this one stays', async () => {
    const user = stack.users.names[2];
    const laptop = await newContext(LAPTOP);
    const phone = await newContext(PHONE);
    const { page: pl } = await openAndLogin(laptop.context, user, stack.users.password);
    const { page: pp } = await openAndLogin(phone.context, user, stack.users.password);
    await pl.click('#sessions-refresh');
    await devices(pl, 2);

    // Wrong current password: refused, said in words, nothing revoked.
    let since = mark();
    await pl.fill('#current-password', `not-${stack.users.password}`);
    await pl.fill('#new-password', stack.users.newPassword);
    await pl.click('#change-password');
    await expectText(pl, '#password-error', 'The current password is wrong.');
    assert.deepEqual(answered(onWire('/v1/me/password', since)).map((r) => r.status), [401]);
    await expectText(pl, '#password-done', '');
    await shot(pl, 'demo-password-wrong.png');
    await pp.click('#sessions-refresh');
    await devices(pp, 2);
    await expectText(pp, '#status', `signed in as ${user}`);

    // The right one: changed, the phone is signed out, the laptop stays.
    since = mark();
    await pl.fill('#current-password', stack.users.password);
    await pl.fill('#new-password', stack.users.newPassword);
    await pl.click('#change-password');
    await expectText(pl, '#password-done', 'Password changed. Your other sessions were signed out; this device stays signed in.');
    const changed = Date.now();
    await expectText(pl, '#password-error', '');
    assert.deepEqual(answered(onWire('/v1/me/password', since)).map((r) => r.status), [200]);
    assert.deepEqual((await devices(pl, 1)).map((d) => [d.device, d.badge]), [['Chrome on Linux', 'this device']]);
    assert.deepEqual([await pl.inputValue('#current-password'), await pl.inputValue('#new-password')], ['', ''], 'the form was cleared');
    await shot(pl, 'demo-password-changed.png');

    await pp.click('#call');
    await expectText(pp, '#calls', 'ok 0/10');
    await expectText(pp, '#status', 'signed out');
    await expectText(pp, '#notice', SIGNED_OUT_REMOTELY);

    // The laptop's session moved to the new password: it still refreshes.
    await untilExpired(changed);
    since = mark();
    await pl.click('#call');
    await expectText(pl, '#calls', 'ok 10/10');
    assert.equal(count('/v1/refresh', since), 1);
    await expectText(pl, '#status', `signed in as ${user}`);

    // On the phone, the old password no longer works; the new one does.
    await pp.fill('#username', user);
    await pp.fill('#password', stack.users.password);
    await pp.click('#login');
    await expectText(pp, '#error', 'The username or password is wrong.');
    await pp.fill('#password', stack.users.newPassword);
    await pp.click('#login');
    await expectText(pp, '#status', `signed in as ${user}`);
    await expectText(pp, '#notice', '');
    assert.deepEqual([...laptop.problems, ...phone.problems], []);
    await laptop.context.close();
    await phone.context.close();
  });

  test('too many wrong current passwords: the page says how long to wait, in seconds', async () => {
    const user = stack.users.names[3];
    const phone = await newContext(PHONE);
    const { page } = await openAndLogin(phone.context, user, stack.users.password);
    await page.fill('#new-password', stack.users.newPassword);
    // --login-failures-per-user is 10 a minute (bursts of 10): the 11th
    // wrong password at the latest is held back.
    let answer;
    for (let i = 0; i < 15; i++) {
      await page.fill('#current-password', `wrong-${i}`);
      // The answer to this attempt (not a 401 TOKEN_EXPIRED that the
      // client answers by refreshing and replaying it).
      const res = page.waitForResponse(async (r) => r.url().endsWith('/v1/me/password') &&
        (r.status() !== 401 || (await r.json().catch(() => null))?.details?.[0]?.reason !== 'TOKEN_EXPIRED'));
      await page.click('#change-password');
      answer = await res;
      if (answer.status() === 429) break;
      await expectText(page, '#password-error', 'The current password is wrong.');
    }
    assert.equal(answer?.status(), 429, 'rate limited within 15 attempts');
    const retryAfter = Number(await answer.headerValue('retry-after'));
    assert.ok(retryAfter >= 1, `Retry-After ${retryAfter}`);
    const said = await expectMatch(page, '#password-error', /^Too many attempts: try again in \d+ s\.$/);
    const n = Number(/in (\d+) s/.exec(said)?.[1]);
    assert.ok(n >= 1 && n <= retryAfter, `the page says ${n} s, Retry-After is ${retryAfter} s`);
    assert.equal(await page.locator('#change-password').isDisabled(), true, 'held back while it counts down');
    await shot(page, 'demo-password-rate-limited-phone.png');
    await expectText(page, '#status', `signed in as ${user}`);
    assert.deepEqual(phone.problems, []);
    await phone.context.close();
  });
});
