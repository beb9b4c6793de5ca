// axios through identity-axios in real Chromium, cookie mode, two tabs of
// an app on the allowlisted origin (identity is another origin: CORS with
// the cookie), against the identityd TestBrowser starts (3 s access
// tokens). The page imports axios's ES module build from node_modules,
// served by the harness, and the migration guide's createApi.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chromiumArgs, chromiumPath, missingPrerequisite, sleep, startStack } from './harness.js';

const ACCESS_TTL_MS = 3000;

const missing = missingPrerequisite();
if (missing && process.env.CI === 'true') throw new Error(`browser tests cannot run: ${missing} (CI=true: failing instead of skipping)`);

describe('axios adapter in Chromium', { skip: missing ? `browser tests skipped: ${missing}` : false }, () => {
  /** @type {Awaited<ReturnType<typeof startStack>>} */
  let stack;
  /** @type {import('playwright-core').Browser} */
  let browser;

  before(async () => {
    stack = await startStack({ accessTTL: `${ACCESS_TTL_MS / 1000}s` });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const mark = () => stack.wire.length;
  /** Requests (not preflights) to p that reached identityd since the mark. */
  const onWire = (/** @type {string} */ p, since = 0) => stack.wire.slice(since).filter((r) => r.method !== 'OPTIONS' && r.path === p);

  /** A fresh context (cookie jar, Web Locks, channels) whose page errors are collected. */
  async function newContext() {
    const context = await browser.newContext();
    /** @type {string[]} */
    const problems = [];
    context.on('page', (page) => page.on('pageerror', (err) => problems.push(`page error: ${err.message}`)));
    return { context, problems };
  }

  /** Opens the axios app (query: e.g. '?now=…') in a new tab of context. */
  async function openApp(context, query = '') {
    const page = await context.newPage();
    await page.goto(`${stack.allowedOrigin}/axios.html${query}`);
    await page.waitForFunction(() => document.title === 'ready');
    return page;
  }

  /** Ten parallel GET /v1/me with the page's axios instance: their statuses (or errors). */
  const tenCalls = (page) => page.evaluate(async () => {
    const { api } = /** @type {any} */ (window).app;
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => api.get('/v1/me')));
    return results.map((r) => (r.status === 'fulfilled' ? r.value.status : `${r.reason?.name}: ${r.reason?.message}`));
  });

  /** Logs alice in on one tab, opens a second that takes its token; returns both and the login time. */
  async function twoSignedInTabs(context, query = '') {
    const one = await openApp(context, query);
    await one.evaluate((pw) => /** @type {any} */ (window).app.identity.login('alice', pw), stack.password);
    const at = Date.now();
    const opened = mark();
    const two = await openApp(context, query);
    assert.equal(await two.evaluate(() => /** @type {any} */ (window).app.identity.restore()), true);
    assert.equal(onWire('/v1/refresh', opened).length, 0, 'the second tab took the first tab\'s token');
    return { one, two, at };
  }

  const untilExpired = (since) => sleep(Math.max(0, since + ACCESS_TTL_MS + 400 - Date.now()));

  test('two tabs, both expired, ten parallel axios calls each: 20/20 ok and one refresh in all', async () => {
    const { context, problems } = await newContext();
    const { one, two, at } = await twoSignedInTabs(context);
    await untilExpired(at);

    const since = mark();
    const [a, b] = await Promise.all([tenCalls(one), tenCalls(two)]);
    assert.deepEqual([...a, ...b], Array(20).fill(200));
    const refreshes = onWire('/v1/refresh', since);
    assert.equal(refreshes.length, 1, 'refreshes on the wire, both tabs together');
    assert.ok(refreshes[0].cookie, 'the refresh went with the HttpOnly cookie');
    assert.equal(refreshes[0].origin, stack.allowedOrigin);
    assert.deepEqual(onWire('/v1/me', since).map((r) => [r.status, r.acao]), Array(20).fill([200, stack.allowedOrigin]),
      'every call once, with the new token, through CORS');

    // A call to an origin not configured (the app's own) gets no token.
    const echoed = stack.echo.length;
    await one.evaluate(() => /** @type {any} */ (window).app.api.get(`${location.origin}/echo`));
    assert.deepEqual(stack.echo.slice(echoed), [{ path: '/echo', authorization: '' }]);

    for (const page of [one, two]) assert.deepEqual(await page.evaluate(() => /** @type {any} */ (window).signedOut), []);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('two tabs whose clocks stand still: identity answers 401 TOKEN_EXPIRED, one refresh in all, every call replayed once', async () => {
    const { context, problems } = await newContext();
    const { one, two, at } = await twoSignedInTabs(context, `?now=${Date.now()}`);
    await untilExpired(at);

    const since = mark();
    const [a, b] = await Promise.all([tenCalls(one), tenCalls(two)]);
    assert.deepEqual([...a, ...b], Array(20).fill(200));
    assert.equal(onWire('/v1/refresh', since).length, 1, 'refreshes on the wire, both tabs together');
    const me = onWire('/v1/me', since).map((r) => r.status);
    assert.equal(me.filter((s) => s === 401).length, 20, 'each call refused once');
    assert.equal(me.filter((s) => s === 200).length, 20, 'and replayed once');
    assert.equal(me.length, 40);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('logout in one tab: the other tab\'s axios calls reject at once, without a request', async () => {
    const { context, problems } = await newContext();
    const { one, two } = await twoSignedInTabs(context);
    await one.evaluate(() => /** @type {any} */ (window).app.identity.logout());
    await two.waitForFunction(() => /** @type {any} */ (window).signedOut.length > 0, null, { timeout: 2000 });

    const since = mark();
    const out = await tenCalls(two);
    assert.deepEqual(out, Array(10).fill('IdentityError: not signed in'));
    assert.equal(stack.wire.length, since, 'nothing reached identity');
    assert.deepEqual(await two.evaluate(() => /** @type {any} */ (window).signedOut), ['logout']);
    assert.deepEqual(problems, []);
    await context.close();
  });
});
