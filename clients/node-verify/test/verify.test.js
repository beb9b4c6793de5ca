// Run by e2e's TestNodeJose against a real identityd, whose addresses and
// bootstrap user arrive in TESTIDENTITYD_* variables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { errors } from 'jose';

import { createVerifier, requireToken } from '../verify.js';

const base = process.env.TESTIDENTITYD_BASE_URL;
const audience = process.env.TESTIDENTITYD_AUDIENCE;
const username = process.env.TESTIDENTITYD_USERNAME;
const password = process.env.TESTIDENTITYD_PASSWORD;
assert.ok(base && audience && username && password, 'TESTIDENTITYD_* variables not set: run through go test ./e2e/');

async function login() {
  const res = await fetch(`${base}/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

// Changes one claim of a token and keeps its signature.
function edited(token, change) {
  const [header, payload, sig] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  change(claims);
  const out = [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), sig].join('.');
  assert.notEqual(out, token, 'the edit changed nothing');
  return out;
}

const verify = await createVerifier({ discoveryUrl: `${base}/.well-known/openid-configuration`, audience });

test('an access token of identity verifies, with its claims', async () => {
  const pair = await login();
  const claims = await verify(pair.access_token);
  assert.equal(claims.preferred_username, username);
  assert.deepEqual([claims.aud].flat(), [audience]);
  assert.equal(claims.sid, pair.session_id);
  assert.ok(claims.sub && claims.exp > claims.iat);
});

test('an edited token is refused', async () => {
  const { access_token: token } = await login();
  for (const change of [
    (c) => { c.roles = ['admin', 'superuser']; },
    (c) => { c.sub = 'someone-else'; },
    (c) => { c.exp += 3600; },
  ]) {
    await assert.rejects(verify(edited(token, change)), errors.JWSSignatureVerificationFailed);
  }
});

test('a token for another audience, or unsigned, is refused', async () => {
  const other = await createVerifier({ discoveryUrl: `${base}/.well-known/openid-configuration`, audience: 'another-service' });
  const { access_token: token } = await login();
  await assert.rejects(other(token), errors.JWTClaimValidationFailed);
  const [, payload] = token.split('.');
  const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url');
  await assert.rejects(verify(`${none}.${payload}.`));
  // A refresh token is opaque, never a JWT.
  await assert.rejects(verify((await login()).refresh_token));
});

test('a service behind requireToken lets through valid tokens only', async () => {
  const srv = http.createServer(requireToken(verify, (_req, res, claims) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello, ${claims.preferred_username}`);
  }));
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${srv.address().port}/`;
    const { access_token: token } = await login();
    const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), `hello, ${username}`);
    for (const authorization of [undefined, 'Bearer', `Bearer ${edited(token, (c) => { c.roles = ['superuser']; })}`, `Basic ${token}`]) {
      const res = await fetch(url, { headers: authorization ? { authorization } : {} });
      assert.equal(res.status, 401, `authorization ${authorization?.slice(0, 12)}`);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
    }
  } finally {
    srv.close();
  }
});
