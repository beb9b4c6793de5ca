// Test doubles for the client's unit tests: a scripted identity server
// behind a fake fetch, Web Locks, and a BroadcastChannel hub whose
// deliveries can be delayed (to play the races between tabs).

/** A JWT-shaped token (unsigned: the client only reads its claims). */
export function fakeJWT(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims)}.sig`;
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

export function errorResponse(status, reason, message = reason) {
  return json(status, { code: 16, message, details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason, domain: 'identity' }] });
}

const tick = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A scripted identity: issues access tokens numbered at-1, at-2, … and
 * refresh tokens rt-1, rt-2, …; /api answers 200 for the newest access
 * token and 401 TOKEN_EXPIRED for older ones (like an expired token).
 */
export class FakeIdentity {
  constructor({ expiresIn = 60, refreshDelayMs = 5, username = 'alice', sid = 'sid-1' } = {}) {
    this.expiresIn = expiresIn;
    this.refreshDelayMs = refreshDelayMs;
    this.username = username;
    this.sid = sid;
    this.generation = 0;
    this.current = '';
    this.refreshToken = '';
    /** @type {{url: string, init: RequestInit, body: any}[]} */
    this.calls = [];
    /** Replaces the refresh answer when set. */
    this.refreshAnswer = null;
    /** When true, refresh requests never answer. */
    this.refreshHangs = false;
    /** Replaces /api's answer when set: (token) => Response. */
    this.apiAnswer = null;
    this.fetch = this.fetch.bind(this);
  }

  count(path) {
    return this.calls.filter((c) => c.url.endsWith(path)).length;
  }

  #issue() {
    this.generation++;
    this.current = fakeJWT({ sub: 'u1', sid: this.sid, preferred_username: this.username, n: this.generation });
    this.refreshToken = `rt-${this.generation}`;
    return json(200, {
      access_token: this.current,
      token_type: 'Bearer',
      expires_in: this.expiresIn,
      refresh_token: this.refreshToken,
      session_id: this.sid,
    });
  }

  async fetch(input, init = {}) {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    let body = init.body ?? (input instanceof Request ? await input.text() : undefined);
    try { body = body ? JSON.parse(body) : undefined; } catch { /* not JSON */ }
    this.calls.push({ url, init, body });
    if (url.endsWith('/v1/login')) {
      if (body?.password !== 'pw') return errorResponse(401, 'INVALID_CREDENTIALS');
      return this.#issue();
    }
    if (url.endsWith('/v1/refresh')) {
      if (this.refreshHangs) {
        // Like a server that never answers: only the caller's signal ends it.
        await new Promise((_, reject) => init.signal?.addEventListener('abort', () => reject(init.signal.reason)));
      }
      await tick(this.refreshDelayMs);
      if (this.refreshAnswer) return this.refreshAnswer();
      return this.#issue();
    }
    if (url.endsWith('/v1/logout')) return json(200, {});
    const auth = new Headers(init.headers).get('Authorization') ?? '';
    const token = auth.replace(/^Bearer /, '');
    if (this.apiAnswer) return this.apiAnswer(token);
    if (token && token === this.current) return json(200, { ok: true });
    return errorResponse(401, 'TOKEN_EXPIRED');
  }
}

/** Web Locks with the two behaviours the client uses: queueing and ifAvailable. */
export class FakeLocks {
  /** @type {Map<string, Promise<void>>} */
  #held = new Map();

  async request(name, optionsOrCallback, maybeCallback) {
    const options = typeof optionsOrCallback === 'function' ? {} : optionsOrCallback;
    const callback = typeof optionsOrCallback === 'function' ? optionsOrCallback : maybeCallback;
    if (options.ifAvailable && this.#held.has(name)) return callback(null);
    while (this.#held.has(name)) await this.#held.get(name);
    let release;
    this.#held.set(name, new Promise((r) => { release = r; }));
    try {
      return await callback({ name, mode: 'exclusive' });
    } finally {
      this.#held.delete(name);
      release();
    }
  }
}

/**
 * A BroadcastChannel constructor whose instances talk to each other (and
 * only to each other) after delayMs, as tabs of one origin would.
 */
export function channelHub({ delayMs = 0 } = {}) {
  const open = new Set();
  return class FakeChannel {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      open.add(this);
    }
    postMessage(data) {
      const copy = structuredClone(data);
      for (const other of open) {
        if (other === this || other.name !== this.name) continue;
        setTimeout(() => { if (open.has(other)) other.onmessage?.({ data: copy }); }, delayMs);
      }
    }
    close() { open.delete(this); }
  };
}

/** A settable clock. */
export function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t, advance: (ms) => { c.t += ms; } };
  return c;
}

export { tick };

/**
 * Serves handler (fetch-shaped: (url, init) => Response, like
 * FakeIdentity.fetch) over HTTP on loopback, so a real HTTP client (axios)
 * can talk to it. Resolves to {url, close}; every request is recorded in
 * requests with its headers.
 */
export async function serveHTTP(handler) {
  const { createServer } = await import('node:http');
  /** @type {{method: string, path: string, headers: Record<string, string | string[] | undefined>}[]} */
  const requests = [];
  const srv = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
    const url = `http://${req.headers.host}${req.url}`;
    try {
      const answer = await handler(url, { method: req.method, headers, body: body.length ? body.toString() : undefined });
      res.writeHead(answer.status, Object.fromEntries(answer.headers));
      res.end(Buffer.from(await answer.arrayBuffer()));
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => { srv.closeAllConnections(); srv.close(resolve); }),
  };
}
