// Run by e2e's TestNodeGRPCClient against a real identityd, whose addresses
// and bootstrap user arrive in TESTIDENTITYD_* variables: a whole session
// over gRPC, and the errors' codes and reasons.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import grpc from '@grpc/grpc-js';

import { IdentityClient, IdentityError } from '../identity.js';

const addr = process.env.TESTIDENTITYD_GRPC_ADDR;
const username = process.env.TESTIDENTITYD_USERNAME;
const password = process.env.TESTIDENTITYD_PASSWORD;
const unreachable = process.env.TESTIDENTITYD_UNREACHABLE_ADDR;
assert.ok(addr && username && password && unreachable, 'TESTIDENTITYD_* variables not set: run through go test ./e2e/');

const client = new IdentityClient(addr);
after(() => client.close());

/** Asserts that promise rejects with an IdentityError of that code and reason. */
async function rejectsWith(promise, code, reason) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof IdentityError, `not an IdentityError: ${err}`);
    assert.equal(err.codeName, code, err.message);
    assert.equal(err.code, grpc.status[code]);
    assert.equal(err.reason, reason, err.message);
    return true;
  });
}

test('login, verify, refresh, logout; then the old tokens are refused with their reasons', async () => {
  const pair = await client.login(username, password);
  assert.equal(pair.token_type, 'Bearer');
  assert.ok(pair.access_token && pair.refresh_token && pair.session_id);
  assert.ok(pair.expires_in > 0);
  assert.ok(Number(pair.access_token_expires_at.seconds) > Date.now() / 1000);

  const claims = await client.verify(pair.access_token);
  assert.equal(claims.username, username);
  assert.equal(claims.session_id, pair.session_id);
  assert.deepEqual(claims.roles, ['admin']);
  assert.ok(claims.subject);

  const next = await client.refresh(pair.refresh_token);
  assert.equal(next.session_id, pair.session_id, 'a refresh keeps the session');
  assert.notEqual(next.refresh_token, pair.refresh_token, 'the refresh token rotates');
  assert.equal((await client.verify(next.access_token)).session_id, pair.session_id);

  assert.deepEqual(await client.logout(next.refresh_token), {});
  // The session ended at once: both access tokens are refused long
  // before they expire, and its refresh token no longer works.
  await rejectsWith(client.verify(next.access_token), 'UNAUTHENTICATED', 'TOKEN_REVOKED');
  await rejectsWith(client.verify(pair.access_token), 'UNAUTHENTICATED', 'TOKEN_REVOKED');
  await rejectsWith(client.refresh(next.refresh_token), 'UNAUTHENTICATED', 'REFRESH_TOKEN_INVALID');
});

test('a wrong password is INVALID_CREDENTIALS, an edited token TOKEN_INVALID', async () => {
  await rejectsWith(client.login(username, `wrong-${password}`), 'UNAUTHENTICATED', 'INVALID_CREDENTIALS');
  const { access_token: token } = await client.login(username, password);
  const [h, p, s] = token.split('.');
  const forged = [h, p, s.slice(0, -2) + (s.endsWith('AA') ? 'BB' : 'AA')].join('.');
  await rejectsWith(client.verify(forged), 'UNAUTHENTICATED', 'TOKEN_INVALID');
  await rejectsWith(client.verify('not-a-token'), 'UNAUTHENTICATED', 'TOKEN_INVALID');
});

test('an empty request is INVALID_ARGUMENT with INVALID_REQUEST', async () => {
  await rejectsWith(client.login('', ''), 'INVALID_ARGUMENT', 'INVALID_REQUEST');
});

test('no identityd at the address: UNAVAILABLE, and no reason', async () => {
  const nobody = new IdentityClient(unreachable, { deadlineMs: 20_000 });
  try {
    await rejectsWith(nobody.login(username, password), 'UNAVAILABLE', '');
  } finally {
    nobody.close();
  }
});
