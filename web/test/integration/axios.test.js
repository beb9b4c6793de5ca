// axios through identity-axios against a real identityd, in bearer mode,
// from Node: TestIntegration (browser_test.go) starts identityd and Redis
// with a 3 s access-token lifetime and describes them in TESTIDENTITYD_*
// variables; run these with `go test -run TestIntegration ./web/` (or
// `npm run test:integration`). identityd is reached through a proxy that
// counts what goes on the wire.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import axios from 'axios';

import { IdentityClient, IdentityError } from '../../identity-client.js';
import { useIdentity } from '../../identity-axios.js';
import { freePort, recorder, sleep } from '../browser/harness.js';

const ACCESS_TTL_MS = 3000;
const env = process.env;
const missing = env.TESTIDENTITYD_HTTP_ADDR ? '' : 'no identityd given (TESTIDENTITYD_HTTP_ADDR unset): run them with `go test -run TestIntegration ./web/`';
if (missing && env.CI === 'true') throw new Error(`integration tests cannot run: ${missing} (CI=true: failing instead of skipping)`);

describe('axios with identity-axios against identityd (bearer mode)', { skip: missing || false }, () => {
  /** @type {import('node:http').Server} */
  let proxy;
  /** @type {import('../browser/harness.js').WireEntry[]} */
  const wire = [];
  let api = '';
  const username = String(env.TESTIDENTITYD_USERNAME);
  const password = String(env.TESTIDENTITYD_PASSWORD);
  /** @type {IdentityClient[]} */
  const clients = [];

  before(async () => {
    if (env.TESTIDENTITYD_ACCESS_TTL !== `${ACCESS_TTL_MS / 1000}s`) {
      throw new Error(`identityd runs with --access-ttl ${env.TESTIDENTITYD_ACCESS_TTL}, these tests need ${ACCESS_TTL_MS / 1000}s`);
    }
    const port = await freePort();
    proxy = await recorder(port, Number(new URL(`http://${env.TESTIDENTITYD_HTTP_ADDR}`).port), wire);
    api = `http://127.0.0.1:${port}`;
  });
  after(() => {
    for (const c of clients) c.close();
    proxy?.close();
    proxy?.closeAllConnections();
  });

  /** A bearer-mode client on identity (through the proxy) and an axios instance with the adapter. */
  function app(clientOptions = {}) {
    const client = new IdentityClient({ baseUrl: api, mode: 'bearer', ...clientOptions });
    clients.push(client);
    const http = axios.create({ baseURL: api });
    useIdentity(http, client);
    /** @type {string[]} */
    const signedOut = [];
    client.addEventListener('signedout', (ev) => signedOut.push(/** @type {CustomEvent} */ (ev).detail.reason));
    return { client, http, signedOut };
  }

  const mark = () => wire.length;
  const onWire = (/** @type {string} */ p, since = 0) => wire.slice(since).filter((r) => r.path === p);
  const ten = (http) => Promise.allSettled(Array.from({ length: 10 }, () => http.get('/v1/me')));

  test('10 parallel calls after the access token expired: 10 answers, exactly one /v1/refresh on the wire', async () => {
    const { client, http } = app();
    await client.login(username, password);
    const loggedIn = Date.now();
    await sleep(loggedIn + ACCESS_TTL_MS + 400 - Date.now());

    const since = mark();
    const results = await ten(http);
    assert.deepEqual(results.map((r) => r.status === 'fulfilled' && r.value.status), Array(10).fill(200));
    for (const r of results) assert.equal(r.status === 'fulfilled' && r.value.data.username, username);
    assert.equal(onWire('/v1/refresh', since).length, 1, 'refreshes on the wire');
    assert.deepEqual(onWire('/v1/me', since).map((r) => r.status), Array(10).fill(200), 'each call once, with the new token');
  });

  test('identityd answers 401 TOKEN_EXPIRED (the client\'s clock lags): one refresh, each call replayed once', async () => {
    // A clock that stands still: the client believes its token is fresh
    // and sends it; identityd refuses it, and the adapter takes over.
    const frozen = Date.now();
    const { client, http } = app({ now: () => frozen });
    await client.login(username, password);
    await sleep(ACCESS_TTL_MS + 400);

    const since = mark();
    const results = await ten(http);
    assert.deepEqual(results.map((r) => r.status === 'fulfilled' && r.value.status), Array(10).fill(200));
    assert.equal(onWire('/v1/refresh', since).length, 1, 'refreshes on the wire');
    const me = onWire('/v1/me', since).map((r) => r.status);
    assert.equal(me.length, 20, 'each call twice: refused, replayed');
    assert.deepEqual(me.filter((s) => s === 401).length, 10);
    assert.deepEqual(me.filter((s) => s === 200).length, 10);
  });

  test('logout of all sessions elsewhere: TOKEN_REVOKED, signedout once, a clear rejection, no refresh', async () => {
    const a = app();
    const b = app();
    await a.client.login(username, password);
    await b.client.login(username, password);
    assert.equal((await a.http.get('/v1/me')).status, 200);
    await b.client.logout({ allSessions: true });

    const since = mark();
    const results = await Promise.allSettled(Array.from({ length: 3 }, () => a.http.get('/v1/me')));
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof IdentityError, String(r.reason));
      assert.equal(r.reason.reason, 'TOKEN_REVOKED');
      assert.ok(axios.isAxiosError(r.reason.cause));
    }
    assert.deepEqual(a.signedOut, ['TOKEN_REVOKED']);
    assert.equal(a.client.signedIn, false);
    await assert.rejects(a.http.get('/v1/me'), (e) => e instanceof IdentityError && e.reason === 'SIGNED_OUT');
    assert.equal(onWire('/v1/refresh', since).length, 0);
    assert.equal(onWire('/v1/me', since).length, 3, 'nothing after the sign-out');
  });
});
