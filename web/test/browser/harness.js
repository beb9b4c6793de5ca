// What the browser tests run against: a real identityd with a private
// redis-server, started by the Go side (TestBrowser in browser_test.go,
// through internal/testidentityd) with a short access-token lifetime, the
// demo on and one allowlisted origin, and described to these tests by the
// TESTIDENTITYD_* environment variables; in front of it, a recorder of what
// reaches it, two static pages on other origins of the same site (one
// allowlisted, one not), and Debian's Chromium driven by playwright-core.
// Everything listens on loopback.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** Flags for Chromium on a machine with no network but loopback. */
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Why the browser tests cannot run here, or '' if they can. */
export function missingPrerequisite() {
  if (!process.env.TESTIDENTITYD_HTTP_ADDR) {
    return 'no identityd given (TESTIDENTITYD_HTTP_ADDR unset): run them with `go test -run TestBrowser ./web/`, which starts identityd and Redis';
  }
  if (!existsSync(chromiumPath)) return `no Chromium at ${chromiumPath} (apt-get install chromium)`;
  if (!existsSync(path.join(webDir, 'node_modules', 'playwright-core'))) return 'playwright-core not installed (npm ci in web/)';
  return '';
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts what the tests need in front of the identityd the Go side runs;
 * returns the addresses and a stop function.
 * @param {{accessTTL: string}} options
 */
export async function startStack({ accessTTL }) {
  const env = process.env;
  if (env.TESTIDENTITYD_ACCESS_TTL !== accessTTL) {
    throw new Error(`identityd runs with --access-ttl ${env.TESTIDENTITYD_ACCESS_TTL}, these tests need ${accessTTL} (TestBrowser in browser_test.go sets it)`);
  }
  const target = Number(new URL(`http://${env.TESTIDENTITYD_HTTP_ADDR}`).port);
  const allowedOrigin = String(env.TESTIDENTITYD_ALLOWED_ORIGIN);
  const allowedPort = Number(new URL(allowedOrigin).port);
  const password = String(env.TESTIDENTITYD_PASSWORD);
  // Users of their own for the tests that list, revoke and change
  // passwords, so they never touch alice (TestBrowser creates them).
  if (!env.TESTIDENTITYD_DEMO_USERS || !env.TESTIDENTITYD_DEMO_PASSWORD || !env.TESTIDENTITYD_DEMO_NEW_PASSWORD) {
    throw new Error('TESTIDENTITYD_DEMO_USERS, _DEMO_PASSWORD and _DEMO_NEW_PASSWORD unset (TestBrowser in browser_test.go sets them)');
  }
  const users = {
    names: env.TESTIDENTITYD_DEMO_USERS.split(','),
    password: env.TESTIDENTITYD_DEMO_PASSWORD,
    newPassword: env.TESTIDENTITYD_DEMO_NEW_PASSWORD,
  };

  /** @type {http.Server[]} */
  const servers = [];
  const stop = async () => {
    for (const s of servers) {
      s.close();
      s.closeAllConnections();
    }
  };
  try {
    const [proxyPort, evilPort] = await Promise.all([freePort(), freePort()]);
    const api = `http://localhost:${proxyPort}`;
    const evilOrigin = `http://localhost:${evilPort}`;
    // The browser reaches identityd through a recorder, so the tests count
    // what really went on the wire (a request a CORS preflight stopped
    // never reaches it).
    /** @type {WireEntry[]} */
    const wire = [];
    servers.push(await recorder(proxyPort, target, wire));
    /** @type {EchoEntry[]} */
    const echo = [];
    servers.push(await pageServer(allowedPort, { '/': allowedPage(api), '/axios.html': axiosPage(api) }, echo));
    servers.push(await pageServer(evilPort, { '/': evilPage(api) }, echo));
    return { api, demo: `${api}/demo/`, allowedOrigin, evilOrigin, password, users, wire, echo, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * One request as it reached identityd.
 * @typedef {{method: string, path: string, origin: string, cookie: boolean, status: number, acao: string, reason: string}} WireEntry
 * reason: the ErrorInfo reason of an error answer ('' for others), set when the answer has been relayed
 */

/**
 * A transparent HTTP relay from port to identityd at target that records
 * every request it passes (Host is kept, so identityd sees the origin the
 * browser used). Also the counting proxy of test/integration/.
 * @param {number} port
 * @param {number} target
 * @param {WireEntry[]} wire
 * @returns {Promise<http.Server>}
 */
export function recorder(port, target, wire) {
  const agent = new http.Agent({ keepAlive: true });
  const srv = http.createServer((req, res) => {
    const entry = {
      method: req.method ?? '',
      path: new URL(req.url ?? '/', 'http://x').pathname,
      origin: String(req.headers.origin ?? ''),
      cookie: String(req.headers.cookie ?? '').includes('__Host-identity_refresh='),
      status: 0,
      acao: '',
      reason: '',
    };
    wire.push(entry);
    const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
      entry.status = upRes.statusCode ?? 0;
      entry.acao = String(upRes.headers['access-control-allow-origin'] ?? '');
      res.writeHead(upRes.statusCode ?? 502, upRes.rawHeaders);
      if (entry.status >= 400) {
        // Keep the reason of identity's error body (small) as it passes.
        /** @type {Buffer[]} */
        const chunks = [];
        upRes.on('data', (c) => chunks.push(c));
        upRes.on('end', () => {
          try {
            const details = JSON.parse(Buffer.concat(chunks).toString('utf8'))?.details;
            entry.reason = (Array.isArray(details) ? details : []).find((d) => d?.domain === 'identity')?.reason ?? '';
          } catch {
            // not identity's JSON
          }
        });
      }
      upRes.pipe(res);
    });
    up.on('error', () => { entry.status = 502; res.writeHead(502).end(); });
    req.pipe(up);
  });
  srv.on('close', () => agent.destroy());
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve(srv)));
}

/**
 * A request to a page server's /echo, with its Authorization header.
 * @typedef {{path: string, authorization: string}} EchoEntry
 */

/**
 * The modules a page may import, served from this tree: the client, the
 * axios adapter, the migration guide's example, and axios's own ES module
 * build from node_modules (no CDN).
 */
const modules = {
  '/identity-client.js': 'identity-client.js',
  '/identity-axios.js': 'identity-axios.js',
  '/examples/api.js': 'examples/api.js',
  '/axios.js': 'node_modules/axios/dist/esm/axios.js',
};

/**
 * Serves pages (path → HTML), the modules above, and /echo, which answers
 * 200 and records the request in echo.
 * @param {number} port
 * @param {Record<string, string>} pages
 * @param {EchoEntry[]} echo
 */
function pageServer(port, pages, echo) {
  const srv = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    const file = Object.hasOwn(modules, p) ? modules[/** @type {keyof typeof modules} */ (p)] : '';
    if (file) {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(readFileSync(path.join(webDir, file)));
    } else if (Object.hasOwn(pages, p)) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(pages[p]);
    } else if (p === '/echo') {
      echo.push({ path: p, authorization: String(req.headers.authorization ?? '') });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve(srv)));
}

/** An app on an allowlisted origin that uses identity through CORS. */
function allowedPage(api) {
  return `<!doctype html><title>allowed app</title>
<script type="module">
import { IdentityClient } from '/identity-client.js';
window.client = new IdentityClient({ baseUrl: ${JSON.stringify(api)} });
document.title = 'ready';
</script>`;
}

/**
 * An app on the allowlisted origin that calls identity with axios through
 * the adapter, in cookie mode: with the migration guide's createApi
 * (examples/api.js, imported as an app would, through an import map), or,
 * given ?now=<ms>, built directly with a client whose clock stands still
 * at that time (so it sends expired tokens and identity answers 401).
 */
function axiosPage(api) {
  return `<!doctype html><title>axios app</title>
<script type="importmap">{"imports": {"axios": "/axios.js", "@identityd/web/": "/"}}</script>
<script type="module">
import axios from 'axios';
import { IdentityClient } from '@identityd/web/identity-client.js';
import { useIdentity } from '@identityd/web/identity-axios.js';
import { createApi } from '/examples/api.js';
const API = ${JSON.stringify(api)};
const frozen = new URLSearchParams(location.search).get('now');
window.signedOut = [];
const onSignedOut = (reason) => window.signedOut.push(reason);
if (frozen === null) {
  window.app = createApi({ identityUrl: API, apiUrl: API, onSignedOut });
} else {
  const identity = new IdentityClient({ baseUrl: API, now: () => Number(frozen) });
  identity.addEventListener('signedout', (ev) => onSignedOut(ev.detail.reason));
  const api = axios.create({ baseURL: API });
  useIdentity(api, identity);
  window.app = { identity, api };
}
document.title = 'ready';
</script>`;
}

/** A page of the same site on an origin identity does not list. */
function evilPage(api) {
  return `<!doctype html><title>other origin</title>
<form id="csrf" method="post" action="${api}/v1/logout"></form>`;
}
