// The migration guide's framework-free code (docs/browser.md) is
// examples/api.js, word for word: this test checks the guide still holds
// the file, and runs it with the real axios against a scripted identity and
// a scripted API on two loopback origins (node --test).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createApi } from '../../examples/api.js';
import { FakeIdentity, errorResponse, serveHTTP } from './fakes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const web = path.resolve(here, '../..');

test('docs/browser.md contains examples/api.js verbatim, in a js block', () => {
  const guide = readFileSync(path.resolve(web, '../docs/browser.md'), 'utf8');
  const snippet = readFileSync(path.join(web, 'examples/api.js'), 'utf8');
  assert.ok(guide.includes('```js\n' + snippet + '```\n'), 'docs/browser.md lacks examples/api.js as it is: paste the file into the guide again');
});

describe('the guide\'s createApi', () => {
  /** @type {(() => unknown)[]} */
  const cleanups = [];
  after(async () => { for (const f of cleanups.reverse()) await f(); });

  async function start() {
    const server = new FakeIdentity();
    const identity = await serveHTTP(server.fetch);
    // The app's backend: it takes the token identity issued last (the fake's rule).
    const backend = await serveHTTP((url, init) => server.fetch(url, init));
    cleanups.push(identity.close, backend.close);
    /** @type {string[]} */
    const signedOut = [];
    const app = createApi({ identityUrl: identity.url, apiUrl: backend.url, onSignedOut: (r) => signedOut.push(r) });
    cleanups.push(() => app.identity.close());
    return { server, identity, backend, signedOut, ...app };
  }

  test('log in, call the backend with the token, refresh once for ten expired calls', async () => {
    const { server, backend, identity, api, signedOut } = await start();
    await identity.login('alice', 'pw');
    assert.equal((await api.get('/api')).status, 200);
    assert.equal(backend.requests[0].headers.authorization, `Bearer ${server.current}`);

    server.current = 'rotated-behind-our-back'; // the access token expired
    const results = await Promise.all(Array.from({ length: 10 }, () => api.get('/api')));
    assert.deepEqual(results.map((r) => r.status), Array(10).fill(200));
    assert.equal(server.count('/v1/refresh'), 1);
    assert.deepEqual(signedOut, []);
  });

  test('a dead session reaches onSignedOut once, and the calls reject', async () => {
    const { server, identity, api, signedOut } = await start();
    await identity.login('alice', 'pw');
    server.current = 'rotated-behind-our-back';
    server.refreshAnswer = () => errorResponse(401, 'REFRESH_TOKEN_REUSED');
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => api.get('/api')));
    assert.ok(results.every((r) => r.status === 'rejected' && r.reason.name === 'IdentityError'));
    assert.deepEqual(signedOut, ['REFRESH_TOKEN_REUSED']);
    assert.equal(server.count('/v1/refresh'), 1);
  });
});
