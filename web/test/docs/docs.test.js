// The API documentation page (/docs/, identityd --api-docs) in Debian's
// Chromium: it renders every operation of identityd's own /openapi.json
// under the page's strict CSP (scripts and styles from 'self' only), with
// no CSP violation, page error or console error, and "Try it out" logs in
// against the same identityd. Run by TestAPIDocs in browser_test.go, which
// starts identityd and describes it in TESTIDENTITYD_* variables.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

import { chromiumArgs, chromiumPath, webDir } from '../browser/harness.js';

const base = process.env.TESTIDENTITYD_BASE_URL;
const username = process.env.TESTIDENTITYD_USERNAME;
const password = process.env.TESTIDENTITYD_PASSWORD;
const results = path.join(webDir, 'test-results');

const missing = !base || !username || !password
  ? 'no identityd given (TESTIDENTITYD_BASE_URL unset): run them with `go test -run TestAPIDocs ./web/`'
  : !existsSync(chromiumPath) ? `no Chromium at ${chromiumPath}`
    : !existsSync(path.join(webDir, 'node_modules', 'playwright-core')) ? 'playwright-core not installed (npm ci in web/)' : '';

/** @type {import('playwright-core').Browser | undefined} */
let browser;

before(async () => {
  if (missing) return;
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  mkdirSync(results, { recursive: true });
});

after(async () => { await browser?.close(); });

/** The operations the document lists, as "METHOD /path". */
async function documentedOperations() {
  const res = await fetch(`${base}/openapi.json`);
  assert.equal(res.status, 200);
  const doc = await res.json();
  const ops = [];
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const m of Object.keys(methods)) ops.push(`${m.toUpperCase()} ${p}`);
  }
  assert.ok(ops.includes('POST /v1/login'), `the document lists no login: ${ops}`);
  return ops.sort();
}

test('/docs renders every operation of /openapi.json with no CSP violation, and Try it out logs in', { skip: missing || false }, async () => {
  assert.ok(browser);
  const want = await documentedOperations();
  const context = await browser.newContext();
  /** @type {string[]} */
  const problems = [];
  // Reported by the page itself, whatever the console says.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`); });
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()}: ${req.failure()?.errorText}`));
  page.on('response', (res) => { if (res.status() >= 400) problems.push(`${res.status()} for ${res.url()}`); });

  const res = await page.goto(`${base}/docs`);
  assert.equal(res?.status(), 200);
  assert.equal(page.url(), `${base}/docs/`, '/docs leads to the page at /docs/');
  const csp = res?.headers()['content-security-policy'] ?? '';
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, /style-src 'self';/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

  // Generous: a loaded machine parses a 1.7 MB bundle slowly.
  await page.locator('.opblock').nth(want.length - 1).waitFor({ timeout: 60_000 });
  const shown = await page.locator('.opblock-summary').evaluateAll((els) => els.map((el) => {
    const method = el.querySelector('.opblock-summary-method')?.textContent ?? '';
    const p = el.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? '';
    return `${method} ${p}`;
  }));
  assert.deepEqual(shown.sort(), want);
  const login = page.locator('.opblock-post', { has: page.locator('[data-path="/v1/login"]') });
  assert.match(await login.locator('.opblock-summary-description').innerText(), /^Login /);

  // Try it out: the page calls this identityd (connect-src 'self').
  await login.locator('.opblock-summary').click();
  await login.getByRole('button', { name: 'Try it out' }).click();
  await login.locator('textarea.body-param__text').fill(JSON.stringify({ username, password }));
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/login' && r.request().method() === 'POST', { timeout: 30_000 });
  await login.getByRole('button', { name: 'Execute' }).click();
  assert.equal((await answered).status(), 200);
  await login.locator('.live-responses-table .response-col_status', { hasText: '200' }).first().waitFor({ timeout: 30_000 });

  await page.screenshot({ path: path.join(results, 'docs.png') });
  assert.deepEqual(problems, []);
  await context.close();
});
