// A Node.js client of identity's gRPC API: Login, Verify, Refresh and
// Logout of identity.v1.IdentityService, with @grpc/grpc-js. The .proto
// files are loaded at run time by @grpc/proto-loader from the repository's
// proto/ (no generated code to go stale). A failed call rejects with an
// IdentityError carrying the gRPC code and identity's reason, read from the
// google.rpc.ErrorInfo in the grpc-status-details-bin trailer.
//
// Messages keep the proto's field names (access_token, session_id, ...),
// as the REST API's JSON does; timestamps are { seconds, nanos }.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The ErrorInfo domain of identity's errors. */
export const DOMAIN = 'identity';

// Wire-compatible subsets of google.rpc.Status, google.protobuf.Any and
// google.rpc.ErrorInfo (the field numbers and types of googleapis'
// status.proto and error_details.proto), enough to read the trailer.
const rpc = protobuf.Root.fromJSON({
  nested: {
    Status: {
      fields: {
        code: { type: 'int32', id: 1 },
        message: { type: 'string', id: 2 },
        details: { rule: 'repeated', type: 'Any', id: 3 },
      },
    },
    Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
    ErrorInfo: {
      fields: {
        reason: { type: 'string', id: 1 },
        domain: { type: 'string', id: 2 },
        metadata: { keyType: 'string', type: 'string', id: 3 },
      },
    },
  },
});
const Status = rpc.lookupType('Status');
const ErrorInfo = rpc.lookupType('ErrorInfo');
const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';

/** The name of a gRPC status code: 16 → 'UNAUTHENTICATED'. */
const codeNames = Object.fromEntries(Object.entries(grpc.status).map(([name, n]) => [n, name]));

/**
 * The google.rpc.ErrorInfo of identity in a gRPC error's trailers, or
 * undefined when there is none (a transport failure has none).
 * @param {unknown} err
 * @returns {{reason: string, domain: string, metadata: Record<string, string>} | undefined}
 */
export function errorInfo(err) {
  const md = /** @type {any} */ (err)?.metadata;
  if (!(md instanceof grpc.Metadata)) return undefined;
  for (const raw of md.get('grpc-status-details-bin')) {
    if (!Buffer.isBuffer(raw)) continue;
    let status;
    try {
      status = /** @type {any} */ (Status.decode(raw));
    } catch {
      return undefined; // not a Status: no reason to report
    }
    for (const d of status.details ?? []) {
      if (d.type_url !== ERROR_INFO_TYPE) continue;
      const info = /** @type {any} */ (ErrorInfo.decode(d.value));
      if (info.domain === DOMAIN) return { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } };
    }
  }
  return undefined;
}

/** A failed call: the gRPC code (a number of grpc.status), its name and identity's reason. */
export class IdentityError extends Error {
  /**
   * @param {string} method
   * @param {import('@grpc/grpc-js').ServiceError} cause
   */
  constructor(method, cause) {
    const info = errorInfo(cause);
    const codeName = codeNames[cause.code] ?? String(cause.code);
    super(`identity ${method}: ${codeName} ${info?.reason ?? '(no ErrorInfo)'}: ${cause.details}`, { cause });
    this.name = 'IdentityError';
    this.code = cause.code;
    this.codeName = codeName;
    /** identity.v1.ErrorReason's name ('TOKEN_REVOKED'), or '' when the answer carried none. */
    this.reason = info?.reason ?? '';
    this.metadata = info?.metadata ?? {};
  }
}

/**
 * Loads identity.v1 from the .proto files under protoDir (the repository's
 * proto/ by default), with googleapis' annotations from includeDirs.
 * @param {{protoDir?: string, includeDirs?: string[]}} [options]
 */
export function loadIdentityV1({ protoDir = path.join(repo, 'proto'), includeDirs = [path.join(repo, 'third_party', 'googleapis')] } = {}) {
  const def = protoLoader.loadSync(['identity/v1/identity.proto', 'identity/v1/errors.proto'], {
    includeDirs: [protoDir, ...includeDirs],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  return /** @type {any} */ (grpc.loadPackageDefinition(def)).identity.v1;
}

export class IdentityClient {
  /**
   * @param {string} address host:port of identityd's gRPC port
   * @param {{credentials?: import('@grpc/grpc-js').ChannelCredentials, deadlineMs?: number,
   *   protoDir?: string, includeDirs?: string[]}} [options] credentials: plaintext by default,
   *   for loopback only (grpc.credentials.createSsl(ca) elsewhere); deadlineMs: of each call
   */
  constructor(address, { credentials = grpc.credentials.createInsecure(), deadlineMs = 10_000, ...proto } = {}) {
    const v1 = loadIdentityV1(proto);
    this.stub = new v1.IdentityService(address, credentials);
    this.deadlineMs = deadlineMs;
  }

  /** @returns {Promise<any>} */
  call(/** @type {string} */ method, /** @type {object} */ request) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.deadlineMs);
      this.stub[method](request, new grpc.Metadata(), { deadline }, (/** @type {any} */ err, /** @type {any} */ res) => {
        if (err) reject(new IdentityError(method, err));
        else resolve(res);
      });
    });
  }

  /** Logs in: a TokenPair (access_token, refresh_token, session_id, expires_in, ...). */
  login(/** @type {string} */ username, /** @type {string} */ password) {
    return this.call('Login', { username, password });
  }

  /** Checks an access token completely (also that its session is live): its claims. */
  verify(/** @type {string} */ token) {
    return this.call('Verify', { token });
  }

  /** Rotates a refresh token: the session's next TokenPair. */
  refresh(/** @type {string} */ refreshToken) {
    return this.call('Refresh', { refresh_token: refreshToken });
  }

  /** Ends the refresh token's session, or with allSessions every session of its user. */
  logout(/** @type {string} */ refreshToken, { allSessions = false } = {}) {
    return this.call('Logout', { refresh_token: refreshToken, all_sessions: allSessions });
  }

  close() {
    this.stub.close();
  }
}
