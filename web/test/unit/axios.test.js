// Unit tests of identity-axios: the real axios (the devDependency) against
// the scripted identity of fakes.js served over loopback HTTP, so every
// call goes through axios's own Node adapter (node --test).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import axios from 'axios';

import { IdentityClient, IdentityError, REASON_SIGNED_OUT } from '../../identity-client.js';
import { useIdentity, REPLAYED } from '../../identity-axios.js';
import { FakeIdentity, FakeLocks, channelHub, clock, errorResponse, serveHTTP } from './fakes.js';

/** @type {(() => unknown)[]} */
const cleanups = [];
after(async () => { for (const f of cleanups.reverse()) await f(); });

/**
 * identity (scripted) on loopback, a bearer-mode client on it with a
 * settable clock, and an axios instance on the same origin with the adapter.
 */
async function setup({ server = new FakeIdentity(), clientOptions = {}, adapterOptions } = {}) {
  const http = await serveHTTP(server.fetch);
  cleanups.push(http.close);
  const c = clock();
  const client = new IdentityClient({ baseUrl: http.url, mode: 'bearer', now: c.now, ...clientOptions });
  cleanups.push(() => client.close());
  const api = axios.create({ baseURL: http.url });
  const stop = useIdentity(api, client, adapterOptions);
  return { server, http, c, client, api, stop };
}

/** Another origin that answers 200 (or answer()) and records what reaches it. */
async function otherOrigin(answer = () => new Response('{"ok":true}', { headers: { 'Content-Type': 'application/json' } })) {
  const srv = await serveHTTP(answer);
  cleanups.push(srv.close);
  return srv;
}

function signedOutEvents(client) {
  const seen = [];
  client.addEventListener('signedout', (ev) => seen.push(ev.detail));
  return seen;
}

const apiCalls = (server) => server.calls.filter((x) => x.url.endsWith('/api'));
const authOf = (call) => new Headers(call.init.headers).get('Authorization');
const ten = (fn) => Promise.allSettled(Array.from({ length: 10 }, (_, i) => fn(i)));
const statuses = (results) => results.map((r) => (r.status === 'fulfilled' ? r.value.status : r.reason?.response?.status ?? r.reason?.reason));

describe('request interceptor', () => {
  test('calls to the client\'s origin carry the access token, calls elsewhere none', async () => {
    const { server, http, api, client } = await setup();
    await client.login('alice', 'pw');
    const other = await otherOrigin();

    assert.equal((await api.get('/api')).data.ok, true);
    assert.equal(authOf(apiCalls(server)[0]), `Bearer ${server.current}`);
    await api.get(`${other.url}/x`);
    // Same port, another host name: another origin.
    await api.get(http.url.replace('127.0.0.1', 'localhost') + '/api').catch((e) => e);
    assert.equal(other.requests[0].headers.authorization, undefined);
    assert.equal(authOf(apiCalls(server)[1]), null, 'localhost is not the configured 127.0.0.1');
  });

  test('options.origins replaces the default', async () => {
    const other = await otherOrigin();
    const { server, api, client } = await setup({ adapterOptions: { origins: [`${other.url}/some/path`] } });
    await client.login('alice', 'pw');
    await api.get(`${other.url}/x`);
    assert.equal(other.requests[0].headers.authorization, `Bearer ${server.current}`);
    await assert.rejects(api.get('/api'), (e) => e.response?.status === 401);
    assert.equal(authOf(apiCalls(server)[0]), null);
    assert.equal(server.count('/v1/refresh'), 0, 'a 401 from an origin not configured is not ours');
  });

  test('ten parallel calls after expiry share one refresh, and each goes once with the new token', async () => {
    const { server, c, api, client } = await setup();
    await client.login('alice', 'pw');
    const first = server.current;
    c.advance(61_000);

    const results = await ten(() => api.get('/api'));
    assert.deepEqual(statuses(results), Array(10).fill(200));
    assert.equal(server.count('/v1/refresh'), 1);
    assert.equal(apiCalls(server).length, 10, 'no call needed a replay');
    assert.notEqual(server.current, first);
    for (const call of apiCalls(server)) assert.equal(authOf(call), `Bearer ${server.current}`);
  });

  test('client.fetch and axios share the same single flight', async () => {
    const { server, http, c, api, client } = await setup();
    await client.login('alice', 'pw');
    c.advance(61_000);
    const [viaFetch, ...viaAxios] = await Promise.all([client.fetch(`${http.url}/api`), api.get('/api'), api.get('/api')]);
    assert.equal(viaFetch.status, 200);
    assert.deepEqual(viaAxios.map((r) => r.status), [200, 200]);
    assert.equal(server.count('/v1/refresh'), 1);
  });

  test('signed out: calls reject with SIGNED_OUT and send nothing', async () => {
    const { server, api } = await setup();
    await assert.rejects(api.get('/api'), (e) => e instanceof IdentityError && e.reason === REASON_SIGNED_OUT && e.status === 0);
    assert.equal(server.calls.length, 0);
  });
});

describe('response interceptor', () => {
  test('401 TOKEN_EXPIRED: one refresh for all, then each call replayed once with its body', async () => {
    const { server, api, client } = await setup();
    await client.login('alice', 'pw');
    server.current = 'rotated-behind-our-back'; // identity no longer takes our token

    const results = await ten((i) => api.post('/api', { n: i }, { headers: { 'X-Call': String(i) } }));
    assert.deepEqual(statuses(results), Array(10).fill(200));
    assert.equal(server.count('/v1/refresh'), 1);
    const calls = apiCalls(server);
    assert.equal(calls.length, 20, 'one try and one replay per call');
    const replays = calls.filter((x) => authOf(x) === `Bearer ${server.current}`);
    assert.equal(replays.length, 10);
    assert.deepEqual(replays.map((x) => x.body.n).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const x of replays) assert.equal(new Headers(x.init.headers).get('X-Call'), String(x.body.n), 'headers kept');
  });

  test('a replay that fails again is answered as it is: no loop', async () => {
    const { server, api, client } = await setup();
    await client.login('alice', 'pw');
    server.apiAnswer = () => errorResponse(401, 'TOKEN_EXPIRED');

    const results = await ten(() => api.get('/api'));
    assert.equal(server.count('/v1/refresh'), 1);
    assert.equal(apiCalls(server).length, 20);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(axios.isAxiosError(r.reason), 'the replay\'s own AxiosError');
      assert.equal(r.reason.response.status, 401);
      assert.equal(r.reason.config[REPLAYED], true);
    }
  });

  for (const reason of ['REFRESH_TOKEN_INVALID', 'REFRESH_TOKEN_REUSED']) {
    for (const when of ['before the calls (expired by the clock)', 'after a 401 TOKEN_EXPIRED']) {
      test(`${reason} ${when}: signedout once, every call rejects with it, nothing loops`, async () => {
        const { server, c, api, client } = await setup();
        const seen = signedOutEvents(client);
        await client.login('alice', 'pw');
        if (when.startsWith('before')) c.advance(61_000);
        else server.current = 'rotated-behind-our-back';
        server.refreshAnswer = () => errorResponse(401, reason);

        const results = await ten(() => api.get('/api'));
        assert.equal(server.count('/v1/refresh'), 1);
        assert.equal(apiCalls(server).length, when.startsWith('before') ? 0 : 10);
        // The calls that waited for the refresh reject with its reason; a
        // 401 that comes back after the sign-out, with SIGNED_OUT.
        for (const r of results) {
          assert.equal(r.status, 'rejected');
          assert.ok(r.reason instanceof IdentityError, String(r.reason));
          assert.ok([reason, REASON_SIGNED_OUT].includes(r.reason.reason), r.reason.reason);
          if (!when.startsWith('before')) assert.ok(axios.isAxiosError(r.reason.cause), 'cause: the call\'s AxiosError');
        }
        const first = results.filter((r) => r.status === 'rejected' && r.reason.reason === reason);
        assert.ok(first.length >= 1);
        for (const r of first) assert.equal(r.status === 'rejected' && r.reason.status, 401);
        assert.deepEqual(seen, [{ reason, fromOtherTab: false }]);

        const sent = server.calls.length;
        await assert.rejects(api.get('/api'), (e) => e instanceof IdentityError && e.reason === REASON_SIGNED_OUT);
        assert.equal(server.calls.length, sent, 'no request after the sign-out');
      });
    }
  }

  test('401 TOKEN_REVOKED: signedout once, a clear rejection, no refresh', async () => {
    const { server, api, client } = await setup();
    const seen = signedOutEvents(client);
    await client.login('alice', 'pw');
    server.apiAnswer = () => errorResponse(401, 'TOKEN_REVOKED', 'session revoked');

    const results = await ten(() => api.get('/api'));
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof IdentityError);
      assert.equal(r.reason.reason, 'TOKEN_REVOKED');
      assert.equal(r.reason.message, 'session revoked');
      assert.equal(r.reason.cause.response.status, 401);
    }
    assert.equal(server.count('/v1/refresh'), 0);
    assert.equal(apiCalls(server).length, 10);
    assert.deepEqual(seen, [{ reason: 'TOKEN_REVOKED', fromOtherTab: false }]);
    assert.equal(client.signedIn, false);
  });

  test('other failures are axios\'s own, untouched, and refresh nothing', async () => {
    const { server, api, client } = await setup();
    await client.login('alice', 'pw');
    for (const [status, reason] of [[401, 'TOKEN_INVALID'], [401, ''], [403, 'PERMISSION_DENIED'], [500, 'INTERNAL']]) {
      server.apiAnswer = () => (reason ? errorResponse(status, reason) : new Response('no', { status }));
      const err = await api.get('/api').catch((e) => e);
      assert.ok(axios.isAxiosError(err), `${status} ${reason}: ${err}`);
      assert.equal(err.response.status, status);
    }
    assert.equal(server.count('/v1/refresh'), 0);
    assert.equal(client.signedIn, true);
  });

  for (const responseType of ['text', 'arraybuffer', 'json']) {
    test(`reads the error body with responseType ${responseType}`, async () => {
      const { server, api, client } = await setup();
      await client.login('alice', 'pw');
      server.current = 'rotated-behind-our-back';
      const res = await api.get('/api', { responseType });
      assert.equal(res.status, 200);
      assert.equal(server.count('/v1/refresh'), 1);
    });
  }

  test('the returned function removes both interceptors', async () => {
    const { server, api, client, stop } = await setup();
    await client.login('alice', 'pw');
    stop();
    server.current = 'rotated-behind-our-back';
    await assert.rejects(api.get('/api'), (e) => e.response?.status === 401);
    assert.equal(authOf(apiCalls(server)[0]), null);
    assert.equal(server.count('/v1/refresh'), 0);
  });

  test('refuses what is not an axios instance, and an origin it cannot resolve', async () => {
    const client = new IdentityClient({ baseUrl: 'https://id.example', mode: 'bearer' });
    assert.throws(() => useIdentity(/** @type {any} */ ({}), client), TypeError);
    assert.throws(() => useIdentity(axios.create(), client, { origins: ['/api'] }), /not an absolute URL/);
    assert.throws(() => useIdentity(axios.create(), new IdentityClient({ mode: 'bearer' })), /not an absolute URL/, 'baseUrl \'\' outside a page');
  });
});

describe('tabs', () => {
  /** Two tabs of one origin (cookie mode): shared Web Locks and channels, one axios instance each. */
  async function twoTabs() {
    const server = new FakeIdentity();
    const http = await serveHTTP(server.fetch);
    cleanups.push(http.close);
    const c = clock();
    const locks = new FakeLocks();
    const BroadcastChannel = channelHub({ delayMs: 2 });
    const tab = () => {
      const client = new IdentityClient({ baseUrl: http.url, now: c.now, locks, BroadcastChannel });
      cleanups.push(() => client.close());
      const api = axios.create({ baseURL: http.url });
      useIdentity(api, client);
      return { client, api };
    };
    return { server, c, one: tab(), two: tab() };
  }

  for (const when of ['expired by the clock', 'refused with 401 TOKEN_EXPIRED']) {
    test(`two tabs, five calls each, token ${when}: one refresh in all`, async () => {
      const { server, c, one, two } = await twoTabs();
      await one.client.login('alice', 'pw');
      assert.equal(await two.client.restore(), true);
      assert.equal(server.count('/v1/refresh'), 0, 'the second tab took the first one\'s token');
      if (when.startsWith('expired')) c.advance(61_000);
      else server.current = 'rotated-behind-our-back';

      const five = (api) => Array.from({ length: 5 }, () => api.get('/api'));
      const results = await Promise.allSettled([...five(one.api), ...five(two.api)]);
      assert.deepEqual(statuses(results), Array(10).fill(200));
      assert.equal(server.count('/v1/refresh'), 1, 'refreshes, both tabs together');
      assert.equal(one.client.claims?.n, two.client.claims?.n, 'both tabs hold the same new token');
    });
  }
});
