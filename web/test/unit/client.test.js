// Unit tests of identity-client's refresh queue, single flight and tab
// coordination, against a scripted server (node --test).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { IdentityClient, IdentityError, REASON_SIGNED_OUT } from '../../identity-client.js';
import { FakeIdentity, FakeLocks, channelHub, clock, errorResponse, tick } from './fakes.js';

/** A client on `server` with a clock, no tabs unless given. */
function newClient(server, c, extra = {}) {
  const client = new IdentityClient({
    baseUrl: 'https://id.example',
    fetch: server.fetch,
    now: c.now,
    locks: null,
    BroadcastChannel: null,
    ...extra,
  });
  return client;
}

/** Records the events a client emits. */
function events(client) {
  const seen = [];
  for (const type of ['signedin', 'token', 'signedout']) {
    client.addEventListener(type, (ev) => seen.push({ type, ...ev.detail }));
  }
  return seen;
}

const ten = (client) => Promise.allSettled(Array.from({ length: 10 }, () => client.fetch('https://api.example/api')));

describe('single flight', () => {
  test('ten calls after expiry share one refresh, then go with the new token', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c);
    await client.login('alice', 'pw');
    assert.equal(client.username, 'alice');
    c.advance(61_000);

    const results = await ten(client);
    assert.equal(server.count('/v1/refresh'), 1);
    assert.equal(server.count('/api'), 10, 'each call went once, none needed a replay');
    for (const r of results) assert.equal(r.status === 'fulfilled' && r.value.status, 200);
    for (const call of server.calls.filter((x) => x.url.endsWith('/api'))) {
      assert.equal(new Headers(call.init.headers).get('Authorization'), `Bearer ${server.current}`);
    }
  });

  test('refreshes shortly before expiry, not earlier', async () => {
    const server = new FakeIdentity({ expiresIn: 60 });
    const c = clock();
    const client = newClient(server, c, { refreshBeforeMs: 30_000 });
    await client.login('alice', 'pw');
    // The margin is min(30 s, a quarter of 60 s) = 15 s before expiry.
    c.advance(44_000);
    await client.fetch('https://api.example/api');
    assert.equal(server.count('/v1/refresh'), 0);
    c.advance(2_000);
    await client.fetch('https://api.example/api');
    assert.equal(server.count('/v1/refresh'), 1);
  });

  test('a 401 TOKEN_EXPIRED refreshes once and replays each call once', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c);
    await client.login('alice', 'pw');
    const old = server.current;
    server.current = 'rotated-behind-our-back'; // the server no longer takes our token

    const results = await ten(client);
    assert.equal(server.count('/v1/refresh'), 1);
    assert.equal(server.count('/api'), 20, 'one try and one replay per call');
    assert.notEqual(server.current, old);
    for (const r of results) assert.equal(r.status === 'fulfilled' && r.value.status, 200);
  });

  test('a replay that fails again is returned as is: no loop', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c);
    await client.login('alice', 'pw');
    server.apiAnswer = () => errorResponse(401, 'TOKEN_EXPIRED');

    const results = await ten(client);
    assert.equal(server.count('/v1/refresh'), 1);
    assert.equal(server.count('/api'), 20);
    for (const r of results) assert.equal(r.status === 'fulfilled' && r.value.status, 401);
  });

  for (const reason of ['REFRESH_TOKEN_INVALID', 'REFRESH_TOKEN_REUSED']) {
    test(`${reason} signs out once and stops`, async () => {
      const server = new FakeIdentity();
      const c = clock();
      const client = newClient(server, c);
      const seen = events(client);
      await client.login('alice', 'pw');
      c.advance(61_000);
      server.refreshAnswer = () => errorResponse(401, reason);

      const results = await ten(client);
      assert.equal(server.count('/v1/refresh'), 1);
      assert.equal(server.count('/api'), 0);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof IdentityError);
        assert.equal(r.reason.reason, reason);
      }
      assert.deepEqual(seen.filter((e) => e.type === 'signedout'), [{ type: 'signedout', reason, fromOtherTab: false }]);
      assert.equal(client.signedIn, false);

      // Afterwards calls fail at once, without a request.
      const before = server.calls.length;
      await assert.rejects(client.fetch('https://api.example/api'), (e) => e.reason === REASON_SIGNED_OUT && e.status === 0);
      await assert.rejects(client.refresh(), (e) => e.reason === REASON_SIGNED_OUT);
      assert.equal(server.calls.length, before);
    });
  }

  test('a transient refresh failure fails the waiting calls but keeps the session', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c);
    await client.login('alice', 'pw');
    c.advance(61_000);
    server.refreshAnswer = () => errorResponse(503, 'STORE_UNAVAILABLE');

    const results = await ten(client);
    assert.equal(server.count('/v1/refresh'), 1);
    for (const r of results) assert.equal(r.status === 'rejected' && r.reason.status, 503);
    assert.equal(client.signedIn, true);

    server.refreshAnswer = null;
    const again = await ten(client);
    assert.equal(server.count('/v1/refresh'), 2);
    for (const r of again) assert.equal(r.status === 'fulfilled' && r.value.status, 200);
  });

  test('a refresh that hangs times out, releases the waiters and keeps the session', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c, { requestTimeoutMs: 50, locks: new FakeLocks() });
    await client.login('alice', 'pw');
    c.advance(61_000);
    server.refreshHangs = true;
    const keepAlive = setInterval(() => {}, 1000); // Node does not wait for AbortSignal.timeout's timer
    const results = await ten(client);
    clearInterval(keepAlive);
    assert.equal(server.count('/v1/refresh'), 1);
    for (const r of results) assert.equal(r.status === 'rejected' && r.reason.name, 'TimeoutError');
    assert.equal(client.signedIn, true);
    server.refreshHangs = false;
    assert.equal((await client.fetch('https://api.example/api')).status, 200, 'the lock was released');
  });

  test('a revoked access token signs out', async () => {
    const server = new FakeIdentity();
    const client = newClient(server, clock());
    const seen = events(client);
    await client.login('alice', 'pw');
    server.apiAnswer = () => errorResponse(401, 'TOKEN_REVOKED');
    const res = await client.fetch('https://api.example/api');
    assert.equal(res.status, 401);
    assert.equal(client.signedIn, false);
    assert.equal(server.count('/v1/refresh'), 0);
    assert.equal(seen.at(-1).type, 'signedout');
  });

  test('a Request with a body is replayed whole', async () => {
    const server = new FakeIdentity();
    const client = newClient(server, clock());
    await client.login('alice', 'pw');
    server.current = 'moved';
    const res = await client.fetch(new Request('https://api.example/api', { method: 'POST', body: '{"x":1}', headers: { 'X-Trace': 't' } }));
    assert.equal(res.status, 200);
    const sent = server.calls.filter((x) => x.url.endsWith('/api'));
    assert.equal(sent.length, 2);
    for (const s of sent) {
      assert.deepEqual(s.body, { x: 1 });
      assert.equal(new Headers(s.init.headers).get('X-Trace'), 't');
    }
  });
});

describe('modes', () => {
  test('cookie mode: header, credentials, no refresh token in the body or in memory', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c);
    await client.login('alice', 'pw');
    c.advance(61_000);
    await client.fetch('https://api.example/api');
    const refresh = server.calls.find((x) => x.url === 'https://id.example/v1/refresh');
    assert.equal(new Headers(refresh.init.headers).get('X-Identity-Client'), 'browser');
    assert.equal(refresh.init.credentials, 'include');
    assert.deepEqual(refresh.body, {});
    const login = server.calls.find((x) => x.url.endsWith('/v1/login'));
    assert.equal(new Headers(login.init.headers).get('X-Identity-Client'), 'browser');
  });

  test('bearer mode: the refresh token in memory, rotated on every refresh', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c, { mode: 'bearer' });
    await client.login('alice', 'pw');
    c.advance(61_000);
    await client.fetch('https://api.example/api');
    c.advance(61_000);
    await client.fetch('https://api.example/api');
    const refreshes = server.calls.filter((x) => x.url.endsWith('/v1/refresh'));
    assert.deepEqual(refreshes.map((x) => x.body), [{ refresh_token: 'rt-1' }, { refresh_token: 'rt-2' }]);
    for (const r of refreshes) {
      assert.equal(r.init.credentials, 'omit');
      assert.equal(new Headers(r.init.headers).get('X-Identity-Client'), null);
    }
    await client.logout();
    assert.deepEqual(server.calls.at(-1).body, { all_sessions: false, refresh_token: 'rt-3' });
    assert.equal(client.signedIn, false);
  });

  test('a failed login throws the reason and stays signed out', async () => {
    const server = new FakeIdentity();
    const client = newClient(server, clock());
    await assert.rejects(client.login('alice', 'nope'), (e) => e instanceof IdentityError && e.status === 401 && e.reason === 'INVALID_CREDENTIALS');
    assert.equal(client.signedIn, false);
  });
});

describe('tabs', () => {
  /** Two tabs of one origin: shared locks (unless null) and channel hub. */
  function twoTabs({ locks = new FakeLocks(), delayMs = 0, server = new FakeIdentity() } = {}) {
    const c = clock();
    const BroadcastChannel = channelHub({ delayMs });
    const opts = { locks, BroadcastChannel, channelName: 'test' };
    const a = newClient(server, c, opts);
    const b = newClient(server, c, opts);
    return { server, c, a, b, third: () => newClient(server, c, opts), close: () => { a.close(); b.close(); } };
  }

  test('login in one tab signs in the other', async () => {
    const { a, b, close } = twoTabs();
    const seen = events(b);
    await a.login('alice', 'pw');
    await tick(5);
    assert.equal(b.signedIn, true);
    assert.equal(b.username, 'alice');
    assert.equal(seen[0].type, 'signedin');
    close();
  });

  for (const delayMs of [0, 30]) {
    test(`both tabs expired: one refresh in all (Web Locks, channel delay ${delayMs} ms)`, async () => {
      const { server, c, a, b, close } = twoTabs({ delayMs });
      await a.login('alice', 'pw');
      await tick(delayMs + 5);
      c.advance(61_000);

      const [ra, rb] = await Promise.all([ten(a), ten(b)]);
      assert.equal(server.count('/v1/refresh'), 1);
      for (const r of [...ra, ...rb]) assert.equal(r.status === 'fulfilled' && r.value.status, 200);
      assert.equal(server.count('/api'), 20);
      close();
    });
  }

  test('without Web Locks the BroadcastChannel claim keeps it to one refresh', async () => {
    const server = new FakeIdentity({ refreshDelayMs: 40 });
    const { c, a, b, close } = twoTabs({ locks: null, server });
    await a.login('alice', 'pw');
    await tick(5);
    c.advance(61_000);

    const pa = ten(a);
    await tick(5); // a's claim reaches b
    const pb = ten(b);
    const results = [...(await pa), ...(await pb)];
    assert.equal(server.count('/v1/refresh'), 1);
    for (const r of results) assert.equal(r.status === 'fulfilled' && r.value.status, 200);
    close();
  });

  test('a refresh that finds the session dead signs out both tabs', async () => {
    const { server, c, a, b, close } = twoTabs();
    await a.login('alice', 'pw');
    await tick(5);
    c.advance(61_000);
    server.refreshAnswer = () => errorResponse(401, 'REFRESH_TOKEN_REUSED');
    const seenB = events(b);

    const [ra, rb] = await Promise.all([ten(a), ten(b)]);
    assert.equal(server.count('/v1/refresh'), 1);
    for (const r of [...ra, ...rb]) assert.equal(r.status, 'rejected');
    assert.equal(a.signedIn, false);
    assert.equal(b.signedIn, false);
    assert.deepEqual(seenB, [{ type: 'signedout', reason: 'REFRESH_TOKEN_REUSED', fromOtherTab: true }]);
    close();
  });

  test('logout in one tab signs out the other at once, and its calls stop', async () => {
    const { server, a, b, close } = twoTabs();
    await a.login('alice', 'pw');
    await tick(5);
    const seenB = events(b);

    await a.logout();
    await tick(5);
    assert.equal(server.count('/v1/logout'), 1);
    assert.equal(b.signedIn, false);
    assert.deepEqual(seenB, [{ type: 'signedout', reason: 'logout', fromOtherTab: true }]);

    const before = server.calls.length;
    const results = await ten(b);
    for (const r of results) assert.equal(r.status === 'rejected' && r.reason.reason, REASON_SIGNED_OUT);
    assert.equal(server.calls.length, before, 'no refresh, no call');
    close();
  });

  test('a new tab takes a signed-in tab\'s token instead of refreshing', async () => {
    const { server, a, third, close } = twoTabs();
    await a.login('alice', 'pw');
    const c3 = third();
    assert.equal(await c3.restore(), true);
    assert.equal(c3.username, 'alice');
    assert.equal(server.count('/v1/refresh'), 0, 'the token came from the other tab');
    c3.close();
    close();
  });

  test('restore with no other tab refreshes from the cookie; without a session it is quietly signed out', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const hub = channelHub();
    const opts = { locks: new FakeLocks(), BroadcastChannel: hub, channelName: 't3', helloWaitMs: 10 };
    const x = newClient(server, c, opts);
    assert.equal(await x.restore(), true);
    assert.equal(server.count('/v1/refresh'), 1);

    // A tab whose token is near expiry does not answer hello; the new
    // tab's failed probe must not sign it out.
    c.advance(59_000);
    server.refreshAnswer = () => errorResponse(401, 'REFRESH_TOKEN_INVALID');
    const y = newClient(server, c, opts);
    assert.equal(await y.restore(), false);
    await tick(5);
    assert.equal(y.signedIn, false);
    assert.equal(x.signedIn, true);
    x.close();
    y.close();
  });
});

describe('a login during restore', () => {
  test("restore's probe, refused after a login made while it was on the wire, does not sign the new session out", async () => {
    const server = new FakeIdentity();
    const c = clock();
    let answer = () => {};
    const held = new Promise((resolve) => { answer = resolve; });
    // The probe went before the login set the cookie: refused, but late.
    server.refreshAnswer = async () => { await held; return errorResponse(401, 'REFRESH_TOKEN_INVALID'); };
    const client = newClient(server, c);
    const seen = events(client);
    const restoring = client.restore();
    await tick(20);
    assert.equal(server.count('/v1/refresh'), 1, 'the probe is on the wire');
    server.refreshAnswer = null;
    await client.login('alice', 'pw');
    answer();
    assert.equal(await restoring, true);
    assert.equal(client.signedIn, true);
    assert.deepEqual(seen.filter((e) => e.type === 'signedout'), []);
    await client.fetch('https://api.example/api');
    assert.equal(server.count('/v1/refresh'), 1, 'the session goes on with its own token');
  });
});

describe('for adapters: accessToken, retryToken, IdentityError.fromBody', () => {
  test('accessToken: the current token without a request, one refresh for many near expiry', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c, { mode: 'bearer' });
    await assert.rejects(client.accessToken(), (e) => e.reason === REASON_SIGNED_OUT);
    assert.equal(server.calls.length, 0);
    await client.login('alice', 'pw');
    const first = server.current;
    assert.equal(await client.accessToken(), first);
    assert.equal(server.count('/v1/refresh'), 0);
    c.advance(61_000);
    const tokens = await Promise.all(Array.from({ length: 10 }, () => client.accessToken()));
    assert.equal(server.count('/v1/refresh'), 1);
    assert.deepEqual(new Set(tokens), new Set([server.current]));
    assert.notEqual(server.current, first);
  });

  test('retryToken: TOKEN_EXPIRED refreshes once per stale token, other reasons do not', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c);
    await client.login('alice', 'pw');
    const stale = server.current;
    const [a, b] = await Promise.all([client.retryToken(stale, 'TOKEN_EXPIRED'), client.retryToken(stale, 'TOKEN_EXPIRED')]);
    assert.equal(a, server.current);
    assert.equal(b, a);
    // A late 401 for the old token: the new one is used, no second refresh.
    assert.equal(await client.retryToken(stale, 'TOKEN_EXPIRED'), a);
    assert.equal(server.count('/v1/refresh'), 1);
    for (const reason of ['TOKEN_INVALID', '', 'PERMISSION_DENIED']) assert.equal(await client.retryToken(a, reason), '');
    assert.equal(server.count('/v1/refresh'), 1);
  });

  test('retryToken: TOKEN_REVOKED for the current token signs out, for an old one does nothing', async () => {
    const server = new FakeIdentity();
    const c = clock();
    const client = newClient(server, c);
    const seen = events(client);
    await client.login('alice', 'pw');
    const old = server.current;
    await client.refresh();
    assert.equal(await client.retryToken(old, 'TOKEN_REVOKED'), '');
    assert.equal(client.signedIn, true, 'an old token\'s revocation is not this session\'s end');
    assert.equal(await client.retryToken(server.current, 'TOKEN_REVOKED'), '');
    assert.equal(client.signedIn, false);
    assert.deepEqual(seen.filter((e) => e.type === 'signedout'), [{ type: 'signedout', reason: 'TOKEN_REVOKED', fromOtherTab: false }]);
    await assert.rejects(client.retryToken(old, 'TOKEN_EXPIRED'), (e) => e.reason === REASON_SIGNED_OUT);
  });

  test('IdentityError.fromBody reads identity\'s error body, and only that', () => {
    const body = { code: 16, message: 'token expired', details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'TOKEN_EXPIRED', domain: 'identity' }] };
    const cause = new Error('the call');
    const e = IdentityError.fromBody(401, body, { cause });
    assert.deepEqual([e.name, e.status, e.reason, e.message, e.cause], ['IdentityError', 401, 'TOKEN_EXPIRED', 'token expired', cause]);
    assert.equal(IdentityError.fromBody(401, { details: [{ reason: 'TOKEN_EXPIRED', domain: 'other' }] }).reason, '');
    for (const junk of [null, 'text', 42, [], { details: 'x' }]) {
      const j = IdentityError.fromBody(502, junk);
      assert.deepEqual([j.status, j.reason, j.message], [502, '', 'HTTP 502']);
    }
  });

  test('IdentityError.retryAfter: the delay of a 429, from Retry-After or the body', async () => {
    const info = (metadata) => ({ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'RATE_LIMITED', domain: 'identity', metadata });
    const retry = (delay) => ({ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retry_delay: delay });
    const body = (...details) => ({ code: 8, message: 'too many login attempts', details });
    assert.equal(IdentityError.fromBody(429, body(info({ retry_after_seconds: '7' }), retry('7s'))).retryAfter, 7);
    assert.equal(IdentityError.fromBody(429, body(info({}), retry('1.2s'))).retryAfter, 2, 'rounded up');
    assert.equal(IdentityError.fromBody(429, body(info({ retry_after_seconds: '4' }))).retryAfter, 4);
    assert.equal(IdentityError.fromBody(429, body(info({}))).retryAfter, 0);
    assert.equal(IdentityError.fromBody(401, body(info({ retry_after_seconds: 'soon' }), retry('-3s'))).retryAfter, 0);
    assert.equal(new IdentityError('x', 0, 'SIGNED_OUT').retryAfter, 0);
    assert.equal('cause' in new IdentityError('x', 0, 'SIGNED_OUT'), false);

    const answer = (headers, b) => new Response(JSON.stringify(b), { status: 429, headers });
    assert.equal((await IdentityError.from(answer({ 'Retry-After': '12' }, body(info({}), retry('3s'))))).retryAfter, 12, 'the header wins');
    assert.equal((await IdentityError.from(answer({}, body(info({}), retry('3s'))))).retryAfter, 3);
    const date = new Date(Date.now() + 30_000).toUTCString();
    const fromDate = (await IdentityError.from(answer({ 'Retry-After': date }, body(info({}))))).retryAfter;
    assert.ok(fromDate >= 29 && fromDate <= 31, `Retry-After as a date: ${fromDate} s`);
    const e = await IdentityError.from(answer({ 'Retry-After': '5' }, body(info({}))));
    assert.deepEqual([e.status, e.reason, e.message, e.retryAfter], [429, 'RATE_LIMITED', 'too many login attempts', 5]);
  });
});
