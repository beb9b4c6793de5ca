// What the browser tests run against: a private redis-server, a real
// identityd (built from this tree unless IDENTITY_BIN names a binary) with
// a short access-token lifetime and the demo on, two static pages on other
// origins of the same site (one allowlisted, one not), and Debian's
// Chromium driven by playwright-core. Everything listens on loopback and
// is stopped by stop(), also when the test process is interrupted.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const repoRoot = path.resolve(webDir, '..');
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
  if (!existsSync(chromiumPath)) return `no Chromium at ${chromiumPath} (apt-get install chromium)`;
  for (const bin of ['redis-server', ...(process.env.IDENTITY_BIN ? [] : ['go'])]) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `no ${bin} on PATH`;
    }
  }
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

async function waitFor(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = String(err?.message ?? err);
    }
    await sleep(50);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms ${last}`);
}

function redisPing(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.setTimeout(500, () => { c.destroy(); resolve(false); });
    c.on('error', () => resolve(false));
    c.on('connect', () => c.write('PING\r\n'));
    c.on('data', (d) => { c.destroy(); resolve(d.toString().startsWith('+PONG')); });
  });
}

/**
 * Starts everything; returns the addresses and a stop function.
 * @param {{accessTTL: string}} options
 */
export async function startStack({ accessTTL }) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'identity-browser-'));
  /** @type {import('node:child_process').ChildProcess[]} */
  const children = [];
  /** @type {http.Server[]} */
  const servers = [];
  let logs = '';
  const stop = async () => {
    for (const s of servers) s.close();
    for (const c of children.reverse()) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await Promise.race([new Promise((r) => c.once('exit', r)), sleep(5000)]);
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = () => { stop().finally(() => process.exit(130)); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    let bin = process.env.IDENTITY_BIN;
    if (!bin) {
      bin = path.join(tmp, 'identityd');
      execFileSync('go', ['build', '-o', bin, './cmd/identityd'], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
    }

    const redisPort = await freePort();
    const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp], { stdio: 'ignore' });
    children.push(redis);
    await waitFor('redis-server', 10_000, () => redisPing(redisPort));

    const [httpPort, grpcPort, proxyPort, allowedPort, evilPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const api = `http://localhost:${proxyPort}`;
    const allowedOrigin = `http://localhost:${allowedPort}`;
    const evilOrigin = `http://localhost:${evilPort}`;
    const password = `pw-${Math.random().toString(36).slice(2)}`;
    const pwFile = path.join(tmp, 'password');
    writeFileSync(pwFile, password, { mode: 0o600 });
    const identityd = spawn(bin, [
      '--http-addr', `127.0.0.1:${httpPort}`,
      '--grpc-addr', `127.0.0.1:${grpcPort}`,
      '--redis-url', `redis://127.0.0.1:${redisPort}/0`,
      '--access-ttl', accessTTL,
      '--leeway', '0s',
      '--web-demo',
      '--allowed-origins', allowedOrigin,
      '--login-rate-per-ip', '100000',
    ], {
      env: { ...cleanEnv(), IDENTITY_BOOTSTRAP_USER: 'alice', IDENTITY_BOOTSTRAP_PASSWORD_FILE: pwFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(identityd);
    identityd.stdout.on('data', (d) => { logs += d; });
    identityd.stderr.on('data', (d) => { logs += d; });
    await waitFor('identityd', 20_000, async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok);

    // The browser reaches identityd through a recorder, so the tests count
    // what really went on the wire (a request a CORS preflight stopped
    // never reaches it).
    /** @type {WireEntry[]} */
    const wire = [];
    servers.push(await recorder(proxyPort, httpPort, wire));
    servers.push(await pageServer(allowedPort, allowedPage(api)));
    servers.push(await pageServer(evilPort, evilPage(api)));
    return { api, demo: `${api}/demo/`, allowedOrigin, evilOrigin, password, wire, stop, logs: () => logs };
  } catch (err) {
    await stop();
    throw err;
  }
}

function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IDENTITY_') && k !== 'REDIS_URL'));
}

/**
 * One request as it reached identityd.
 * @typedef {{method: string, path: string, origin: string, cookie: boolean, status: number, acao: string}} WireEntry
 */

/**
 * A transparent HTTP relay from port to identityd at target that records
 * every request it passes (Host is kept, so identityd sees the origin the
 * browser used).
 * @param {number} port
 * @param {number} target
 * @param {WireEntry[]} wire
 */
function recorder(port, target, wire) {
  const agent = new http.Agent({ keepAlive: true });
  const srv = http.createServer((req, res) => {
    const entry = {
      method: req.method ?? '',
      path: new URL(req.url ?? '/', 'http://x').pathname,
      origin: String(req.headers.origin ?? ''),
      cookie: String(req.headers.cookie ?? '').includes('__Host-identity_refresh='),
      status: 0,
      acao: '',
    };
    wire.push(entry);
    const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
      entry.status = upRes.statusCode ?? 0;
      entry.acao = String(upRes.headers['access-control-allow-origin'] ?? '');
      res.writeHead(upRes.statusCode ?? 502, upRes.rawHeaders);
      upRes.pipe(res);
    });
    up.on('error', () => { entry.status = 502; res.writeHead(502).end(); });
    req.pipe(up);
  });
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve(srv)));
}

/** Serves one HTML page at / and the client module at /identity-client.js. */
function pageServer(port, html) {
  const client = readFileSync(path.join(webDir, 'identity-client.js'));
  const srv = http.createServer((req, res) => {
    if (req.url === '/identity-client.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(client);
    } else if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html);
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

/** A page of the same site on an origin identity does not list. */
function evilPage(api) {
  return `<!doctype html><title>other origin</title>
<form id="csrf" method="post" action="${api}/v1/logout"></form>`;
}
