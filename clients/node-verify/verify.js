// Verifying identity's access tokens in a Node.js service with jose, the
// keys found through identity's OIDC discovery document: no shared secret,
// no call to identity per request (jose caches the JWKS and refetches it
// when a token names an unknown kid, so a key rotation needs no restart).
//
// What this does not check: revocation. A logged-out session's access
// tokens verify here until they expire (identity's --access-ttl, 15m by
// default). A service that must refuse them at once asks identity's
// Verify (gRPC or POST /v1/verify), or runs the Go authn package, which
// follows the revocation stream.

import { createRemoteJWKSet, jwtVerify } from 'jose';

/**
 * @typedef {object} VerifierOptions
 * @property {string | URL} discoveryUrl identity's
 *   /.well-known/openid-configuration
 * @property {string} audience the aud identity puts in tokens (--audience)
 * @property {number} [clockTolerance] seconds of clock skew allowed
 */

/**
 * Reads the discovery document and returns a function that verifies an
 * access token: signature with the published keys, algorithm among the
 * document's, iss, aud, exp/nbf, and typ at+jwt (RFC 9068), so an ID
 * token or any other JWT from the same keys is refused.
 *
 * @param {VerifierOptions} opts
 * @returns {Promise<(token: string) => Promise<import('jose').JWTPayload>>}
 */
export async function createVerifier({ discoveryUrl, audience, clockTolerance = 0 }) {
  const res = await fetch(discoveryUrl, { headers: { accept: 'application/json' } });
  if (!res.ok) {
    throw new Error(`discovery: GET ${discoveryUrl}: ${res.status}`);
  }
  const doc = await res.json();
  if (typeof doc.issuer !== 'string' || typeof doc.jwks_uri !== 'string') {
    throw new Error('discovery: the document has no issuer or jwks_uri');
  }
  const algorithms = doc.id_token_signing_alg_values_supported;
  if (!Array.isArray(algorithms) || algorithms.length === 0) {
    throw new Error('discovery: no signing algorithms published (HS256 tokens cannot be verified outside identity)');
  }
  const keys = createRemoteJWKSet(new URL(doc.jwks_uri));
  return async (token) => {
    const { payload } = await jwtVerify(token, keys, {
      issuer: doc.issuer,
      audience,
      algorithms,
      typ: 'at+jwt',
      requiredClaims: ['sub', 'exp', 'iat'],
      clockTolerance,
    });
    return payload;
  };
}

/**
 * A request handler for node:http that lets through only requests with a
 * valid `Authorization: Bearer` access token, answering 401 with
 * `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750) otherwise,
 * as identity itself does.
 *
 * @param {(token: string) => Promise<import('jose').JWTPayload>} verify
 * @param {(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, claims: import('jose').JWTPayload) => void} next
 */
export function requireToken(verify, next) {
  return async (req, res) => {
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization ?? '');
    let claims;
    try {
      if (!m) throw new Error('no bearer token');
      claims = await verify(m[1]);
    } catch {
      res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid_token' }));
      return;
    }
    next(req, res, claims);
  };
}
