// @ts-check
/**
 * identity-client: a small, dependency-free browser client for identity's
 * REST API (ES module, typed with JSDoc).
 *
 * - The access token lives in memory only; `client.fetch` attaches it.
 * - Before a call whose token expires within `refreshBeforeMs` (at most a
 *   quarter of its lifetime), and after a 401 `TOKEN_EXPIRED`, the client
 *   refreshes. Refresh is single-flight: one request on the wire however
 *   many calls wait, and the waiting calls go (or are replayed) once after it.
 * - On `REFRESH_TOKEN_INVALID` / `REFRESH_TOKEN_REUSED` (or a revoked access
 *   token) it emits `signedout` and stops: calls then fail at once with
 *   `SIGNED_OUT`, nothing retries by itself.
 * - Cookie mode (default): the refresh token is an HttpOnly cookie set by
 *   identity (`X-Identity-Client: browser`); page JavaScript never sees it.
 *   All tabs share that cookie, so they share one session: only one tab
 *   refreshes at a time (Web Locks, or a BroadcastChannel claim where Web
 *   Locks is missing) and the others take its result over a
 *   BroadcastChannel; login and logout in one tab reach every tab.
 * - Bearer mode: for apps that cannot use cookies; the refresh token is kept
 *   in this tab's memory, so each tab has its own session and no tab
 *   coordination is needed.
 * - Code that sends its own requests (identity-axios.js, for an axios
 *   instance) uses `accessToken()` and `retryToken()`: the same single
 *   flight and tab coordination as `client.fetch`.
 *
 * @module identity-client
 */

/** @typedef {'cookie' | 'bearer'} Mode */

/**
 * @typedef {object} Options
 * @property {string} [baseUrl] where identity's REST API is ('' = this page's origin)
 * @property {Mode} [mode] 'cookie' (default) or 'bearer'
 * @property {typeof globalThis.fetch} [fetch] the fetch to use (tests inject one)
 * @property {number} [refreshBeforeMs] refresh when the access token expires within this
 *   time (default 30 s, at most a quarter of the token's lifetime)
 * @property {LockManager | null} [locks] Web Locks (default navigator.locks; null: none)
 * @property {BroadcastChannelConstructor | null} [BroadcastChannel] (default the global; null: none)
 * @property {string} [channelName] name of the cross-tab lock and channel (default from baseUrl)
 * @property {number} [peerWaitMs] how long to wait for another tab's result before
 *   refreshing anyway (default 250 ms; the claim fallback waits 20 times this)
 * @property {number} [helloWaitMs] how long restore() asks other tabs for their token
 *   before refreshing from the cookie (default 150 ms)
 * @property {number} [requestTimeoutMs] deadline of a login, refresh or logout request
 *   (default 15 s): a refresh holds the cross-tab lock, so it must not hang
 * @property {() => number} [now] clock in ms (default Date.now)
 */

/** @typedef {new (name: string) => BroadcastChannel} BroadcastChannelConstructor */

/**
 * The JSON of identity's TokenPair (proto field names).
 * @typedef {object} TokenPair
 * @property {string} access_token
 * @property {string} [token_type]
 * @property {number} expires_in seconds
 * @property {string} [refresh_token] empty in cookie mode
 * @property {string} [session_id]
 */

/**
 * Unverified claims of the access token, for display only: the server
 * verifies tokens, the client just reads who it is signed in as.
 * @typedef {{sub?: string, sid?: string, preferred_username?: string, roles?: string[], exp?: number, [k: string]: unknown}} Claims
 */

/**
 * @typedef {object} Access
 * @property {string} token
 * @property {number} expiresAt ms since the epoch, by this machine's clock
 * @property {number} lifetimeMs
 * @property {Claims} claims
 */

/**
 * Messages between tabs. Only access tokens cross (memory to memory);
 * the refresh token stays in its HttpOnly cookie.
 * @typedef {{type: 'token', token: string, expiresAt: number, lifetimeMs: number}
 *   | {type: 'signedout', reason: string, sid?: string}
 *   | {type: 'hello'}
 *   | {type: 'refreshing', until: number}} Message
 */

export const HEADER_CLIENT = 'X-Identity-Client';
/** Rejection reason of calls made while signed out (no request is sent). */
export const REASON_SIGNED_OUT = 'SIGNED_OUT';
/** `signedout` reason when a probe for a session (restore) found none. */
export const REASON_NO_SESSION = 'NO_SESSION';

const REFRESH_DEAD = new Set(['REFRESH_TOKEN_INVALID', 'REFRESH_TOKEN_REUSED']);

/** An error answer of identity (or SIGNED_OUT, raised by the client itself). */
export class IdentityError extends Error {
  /**
   * @param {string} message
   * @param {number} status HTTP status (0 when no request was made)
   * @param {string} reason the ErrorInfo reason, e.g. TOKEN_EXPIRED
   * @param {{cause?: unknown, retryAfter?: number}} [options] cause: what failed, e.g. the
   *   call's own error; retryAfter: seconds to wait before trying again (RATE_LIMITED)
   */
  constructor(message, status, reason, options) {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'IdentityError';
    this.status = status;
    this.reason = reason;
    /** Seconds to wait before trying again (a 429's Retry-After); 0 when not given. */
    this.retryAfter = options?.retryAfter ?? 0;
  }

  /**
   * Reads identity's error body ({code, message, details: [ErrorInfo]}).
   * @param {Response} res
   * @returns {Promise<IdentityError>}
   */
  static async from(res) {
    /** @type {unknown} */
    let body = null;
    try {
      body = await res.clone().json();
    } catch {
      // not identity's JSON (a proxy's page, say): status only
    }
    const err = IdentityError.fromBody(res.status, body);
    const header = retryAfterHeader(res.headers.get('Retry-After'));
    if (header) err.retryAfter = header;
    return err;
  }

  /**
   * Reads an error body already parsed (as an HTTP library hands it over);
   * anything that is not identity's error JSON gives the status only. The
   * delay of a RATE_LIMITED answer comes from its RetryInfo detail (or the
   * ErrorInfo metadata retry_after_seconds).
   * @param {number} status
   * @param {unknown} body
   * @param {{cause?: unknown}} [options]
   * @returns {IdentityError}
   */
  static fromBody(status, body, options) {
    const b = /** @type {{message?: unknown, details?: unknown} | null} */ (body && typeof body === 'object' ? body : null);
    const message = typeof b?.message === 'string' ? b.message : `HTTP ${status}`;
    let reason = '';
    let retryAfter = 0;
    for (const d of Array.isArray(b?.details) ? b.details : []) {
      if (d?.domain === 'identity' && typeof d.reason === 'string') {
        reason = d.reason;
        retryAfter ||= seconds(d.metadata?.retry_after_seconds);
      }
      if (typeof d?.['@type'] === 'string' && d['@type'].endsWith('/google.rpc.RetryInfo')) {
        retryAfter = seconds(d.retry_delay ?? d.retryDelay) || retryAfter;
      }
    }
    return new IdentityError(message, status, reason, { ...options, retryAfter });
  }
}

/**
 * Whole seconds (rounded up, at least 1) of a delay written "5", "5s" or
 * "1.5s" (a google.protobuf.Duration in JSON); 0 for anything else.
 * @param {unknown} v
 * @returns {number}
 */
function seconds(v) {
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)s?\s*$/.exec(v) : null;
  const n = m ? Number(m[1]) : typeof v === 'number' ? v : NaN;
  return Number.isFinite(n) && n > 0 ? Math.max(1, Math.ceil(n)) : 0;
}

/**
 * Seconds of a Retry-After header: delay-seconds or an HTTP date; 0 when
 * absent or unreadable.
 * @param {string | null} v
 * @returns {number}
 */
function retryAfterHeader(v) {
  if (!v) return 0;
  if (/^\s*\d+\s*$/.test(v)) return seconds(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? 0 : Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

/**
 * @param {string} token
 * @returns {Claims}
 */
export function decodeClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/**
 * Browser client of identity. Events (CustomEvent, see `detail`):
 * - `signedin` {username, claims}: a session became available (login here or
 *   in another tab, restore);
 * - `token` {expiresAt}: a new access token (after a refresh, here or elsewhere);
 * - `signedout` {reason, fromOtherTab}: the session is gone ('logout',
 *   REFRESH_TOKEN_INVALID, REFRESH_TOKEN_REUSED, TOKEN_REVOKED), or a
 *   restore found none (NO_SESSION).
 */
export class IdentityClient extends EventTarget {
  /** @type {string} */ #base;
  /** @type {Mode} */ #mode;
  /** @type {typeof globalThis.fetch} */ #fetch;
  /** @type {() => number} */ #now;
  /** @type {number} */ #refreshBeforeMs;
  /** @type {number} */ #peerWaitMs;
  /** @type {number} */ #helloWaitMs;
  /** @type {number} */ #requestTimeoutMs;
  /** @type {LockManager | null} */ #locks;
  /** @type {BroadcastChannel | null} */ #channel = null;
  /** @type {string} */ #lockName;

  /** @type {Access | null} */ #access = null;
  /** Bearer mode only. */ #refreshToken = '';
  /** @type {'unknown' | 'signedin' | 'signedout'} */ #state;
  /** @type {Promise<string> | null} */ #refreshing = null;
  /** Session ended here or by another tab: its late token messages are ignored. */
  #endedSid = '';
  /** Fallback without Web Locks: another tab claimed the refresh until then. */
  #peerRefreshingUntil = 0;
  /** @type {Set<() => void>} resolved by the next token or signedout message */
  #peerWaiters = new Set();

  /** @param {Options} [options] */
  constructor(options = {}) {
    super();
    this.#base = (options.baseUrl ?? '').replace(/\/+$/, '');
    this.#mode = options.mode ?? 'cookie';
    if (this.#mode !== 'cookie' && this.#mode !== 'bearer') throw new TypeError(`mode ${this.#mode}: want 'cookie' or 'bearer'`);
    const f = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => f(input, init); // unbound window.fetch throws "Illegal invocation"
    this.#now = options.now ?? Date.now;
    this.#refreshBeforeMs = options.refreshBeforeMs ?? 30_000;
    this.#peerWaitMs = options.peerWaitMs ?? 250;
    this.#helloWaitMs = options.helloWaitMs ?? 150;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.#state = this.#mode === 'cookie' ? 'unknown' : 'signedout';
    const scope = options.channelName ?? `identity-client ${this.#base || globalThis.location?.origin || ''}`;
    this.#lockName = `${scope} refresh`;
    // Tabs share a session only through the cookie: bearer mode stays in its tab.
    const cookie = this.#mode === 'cookie';
    this.#locks = cookie ? (options.locks !== undefined ? options.locks : globalThis.navigator?.locks ?? null) : null;
    const BC = cookie ? (options.BroadcastChannel !== undefined ? options.BroadcastChannel : globalThis.BroadcastChannel ?? null) : null;
    if (BC) {
      this.#channel = new BC(scope);
      this.#channel.onmessage = (ev) => this.#onMessage(ev.data);
    }
  }

  /** @returns {Mode} */
  get mode() { return this.#mode; }
  /** @returns {string} identity's REST API as given (no trailing slash; '' = this page's origin) */
  get baseUrl() { return this.#base; }
  /** True while the client holds a session (its access token may need a refresh). */
  get signedIn() { return this.#state === 'signedin'; }
  /** @returns {Claims | null} unverified claims of the current access token */
  get claims() { return this.#access?.claims ?? null; }
  /** @returns {string} the signed-in user's name ('' when signed out) */
  get username() { return this.#access?.claims.preferred_username ?? ''; }
  /** @returns {number} when the access token expires (ms since the epoch; 0 when none) */
  get expiresAt() { return this.#access?.expiresAt ?? 0; }

  /** Stops listening to other tabs. */
  close() {
    this.#channel?.close();
    this.#channel = null;
  }

  /**
   * Logs in. In cookie mode the refresh token arrives as an HttpOnly cookie
   * and every tab of this origin becomes signed in.
   * @param {string} username
   * @param {string} password
   * @returns {Promise<Claims>}
   */
  async login(username, password) {
    const res = await this.#post('/v1/login', { username, password });
    if (!res.ok) throw await IdentityError.from(res);
    this.#accept(/** @type {TokenPair} */ (await res.json()), true);
    return /** @type {Claims} */ (this.claims);
  }

  /**
   * Resumes the session after a page load (cookie mode): takes the access
   * token of another signed-in tab if one answers quickly, else refreshes
   * from the cookie. Resolves to whether a session is available.
   * @returns {Promise<boolean>}
   */
  async restore() {
    if (this.#mode !== 'cookie') return this.signedIn;
    if (this.#access && !this.#nearExpiry()) return true;
    if (this.#channel && !this.#access) {
      const answered = this.#nextPeerMessage(this.#helloWaitMs);
      this.#broadcast({ type: 'hello' });
      await answered;
      if (this.#access && !this.#nearExpiry()) return true;
    }
    if (this.#state === 'signedout') this.#state = 'unknown';
    try {
      await this.#refreshAfter(this.#access?.token ?? '');
      return true;
    } catch {
      if (this.#state === 'unknown') this.#signOut(REASON_NO_SESSION, false);
      return false;
    }
  }

  /**
   * Refreshes now (single-flight, coordinated across tabs) and resolves to
   * the new access token.
   * @returns {Promise<string>}
   */
  refresh() {
    if (this.#state === 'signedout') return Promise.reject(signedOutError());
    return this.#refreshAfter(this.#access?.token ?? '');
  }

  /**
   * Like fetch, with `Authorization: Bearer <access token>`. Refreshes
   * first when the token is about to expire; on a 401 TOKEN_EXPIRED it
   * refreshes and replays the call once (so a body must be replayable:
   * a string, Blob, FormData, URLSearchParams or ArrayBuffer, not a stream).
   * Rejects with IdentityError SIGNED_OUT, without a request, when there is
   * no session.
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async fetch(input, init = {}) {
    let token = await this.#tokenForCall();
    const res = await this.#send(input, init, token);
    if (res.status !== 401) return res;
    const { reason } = await IdentityError.from(res);
    token = await this.retryToken(token, reason);
    return token ? this.#send(input, init, token) : res;
  }

  /**
   * An access token fit for a call now, for code that sends its own
   * requests (identity-axios.js does): the current one, or, when it expires
   * within the refresh margin, a new one from the same single-flight,
   * cross-tab refresh as `fetch`. Rejects with IdentityError SIGNED_OUT,
   * without a request, when there is no session, and like `refresh()`
   * when the refresh fails.
   * @returns {Promise<string>}
   */
  accessToken() {
    return this.#tokenForCall();
  }

  /**
   * What a 401 with `reason` to a call made with `token` means, for code
   * that sends its own requests (as `fetch` does itself):
   * - TOKEN_EXPIRED: resolves to the token to replay the call with, once:
   *   a new one from the single-flight refresh, or the one another call or
   *   tab already got since `token` was sent;
   * - TOKEN_REVOKED: the session was ended (a logout elsewhere): signs out
   *   every tab (`signedout`) and resolves to '';
   * - any other reason: resolves to '' (the answer stands).
   * Rejects like `refresh()` when the refresh fails (REFRESH_TOKEN_INVALID
   * or REFRESH_TOKEN_REUSED, after `signedout`; SIGNED_OUT when already
   * signed out).
   * @param {string} token the access token the call carried
   * @param {string} reason the ErrorInfo reason of the 401
   * @returns {Promise<string>}
   */
  async retryToken(token, reason) {
    if (reason === 'TOKEN_REVOKED') {
      if (this.#access?.token === token) this.#signOut(reason, true);
      return '';
    }
    if (reason !== 'TOKEN_EXPIRED') return '';
    return this.#refreshAfter(token);
  }

  /**
   * Logs out this session (or, with allSessions, every session of the user)
   * and signs out every tab. The local sign-out happens even when identity
   * cannot be reached; the error (other than "already gone") is rethrown.
   * @param {{allSessions?: boolean}} [options]
   * @returns {Promise<void>}
   */
  async logout({ allSessions = false } = {}) {
    /** @type {Record<string, unknown>} */
    const body = { all_sessions: allSessions };
    if (this.#mode === 'bearer') body.refresh_token = this.#refreshToken;
    /** @type {unknown} */
    let failure = null;
    if (this.#mode === 'cookie' || this.#refreshToken) {
      try {
        const res = await this.#post('/v1/logout', body);
        if (!res.ok) {
          const err = await IdentityError.from(res);
          if (res.status !== 401) failure = err;
        }
      } catch (err) {
        failure = err;
      }
    }
    this.#signOut('logout', true);
    if (failure) throw failure;
  }

  // --- internals -------------------------------------------------------

  /** @returns {Promise<string>} an access token fit for a call now */
  async #tokenForCall() {
    if (this.#state === 'signedout') throw signedOutError();
    if (this.#access && !this.#nearExpiry()) return this.#access.token;
    return this.#refreshAfter(this.#access?.token ?? '');
  }

  #nearExpiry() {
    const a = this.#access;
    if (!a) return true;
    return this.#now() >= a.expiresAt - Math.min(this.#refreshBeforeMs, a.lifetimeMs / 4);
  }

  /** True if the client holds a usable token other than stale. */
  #freshOtherThan(/** @type {string} */ stale) {
    return this.#state === 'signedin' && !!this.#access && this.#access.token !== stale && !this.#nearExpiry();
  }

  /**
   * The single flight: every caller whose token is `stale` waits on the
   * same promise; a token that changed meanwhile is used as it is.
   * @param {string} stale
   * @returns {Promise<string>}
   */
  #refreshAfter(stale) {
    if (this.#freshOtherThan(stale)) return Promise.resolve(/** @type {Access} */ (this.#access).token);
    if (this.#state === 'signedout') return Promise.reject(signedOutError());
    if (!this.#refreshing) {
      this.#refreshing = this.#coordinated(stale).finally(() => { this.#refreshing = null; });
    }
    return this.#refreshing;
  }

  /**
   * One tab at a time refreshes. With Web Locks: take the lock if it is
   * free and refresh; if another tab holds it, wait for the lock and use
   * that tab's broadcast token, refreshing only if none came.
   * @param {string} stale
   * @returns {Promise<string>}
   */
  async #coordinated(stale) {
    if (this.#locks) {
      const locks = this.#locks;
      const free = await locks.request(this.#lockName, { ifAvailable: true }, async (lock) =>
        lock ? { token: await this.#inLock(stale, false) } : null);
      if (free) return free.token;
      return locks.request(this.#lockName, () => this.#inLock(stale, true));
    }
    if (this.#channel) {
      // No Web Locks: claim the refresh over the channel. Two tabs that
      // claim at the same moment both refresh with the same cookie, which
      // identity's grace window answers with the same new token.
      if (this.#peerRefreshingUntil > this.#now()) {
        await this.#nextPeerMessage(Math.max(0, this.#peerRefreshingUntil - this.#now()));
        const out = this.#settled(stale);
        if (out) return out;
      }
      this.#broadcast({ type: 'refreshing', until: this.#now() + 20 * this.#peerWaitMs });
    }
    return this.#refreshOnWire();
  }

  /**
   * Runs holding the lock.
   * @param {string} stale
   * @param {boolean} waited the lock was held by another tab when we asked
   * @returns {Promise<string>}
   */
  async #inLock(stale, waited) {
    let out = this.#settled(stale);
    if (out) return out;
    if (waited) {
      // The holder posts its result before it releases the lock, but the
      // two reach this tab by different routes: give the message a moment.
      await this.#nextPeerMessage(this.#peerWaitMs);
      out = this.#settled(stale);
      if (out) return out;
    }
    return this.#refreshOnWire();
  }

  /**
   * What another tab's result settles: its fresh token, or its sign-out.
   * @param {string} stale
   * @returns {Promise<string> | null}
   */
  #settled(stale) {
    if (this.#freshOtherThan(stale)) return Promise.resolve(/** @type {Access} */ (this.#access).token);
    if (this.#state === 'signedout') return Promise.reject(signedOutError());
    return null;
  }

  /** @returns {Promise<string>} */
  async #refreshOnWire() {
    /** @type {Record<string, string>} */
    const body = {};
    if (this.#mode === 'bearer') {
      if (!this.#refreshToken) {
        this.#signOut('no refresh token', false);
        throw signedOutError();
      }
      body.refresh_token = this.#refreshToken;
    }
    const sentWith = this.#access;
    const res = await this.#post('/v1/refresh', body);
    if (res.ok) {
      this.#accept(/** @type {TokenPair} */ (await res.json()), true);
      return /** @type {Access} */ (this.#access).token;
    }
    const err = await IdentityError.from(res);
    if (this.#state === 'signedin' && this.#access && this.#access !== sentWith) {
      // A session begun while this refresh was on the wire (a login during
      // restore's probe, which went without a cookie), or a token another
      // tab sent: the refusal was of what came before, not of it.
      return this.#access.token;
    }
    if (res.status === 401 && REFRESH_DEAD.has(err.reason)) {
      // A tab that held a session tells the others it is gone (they share
      // its cookie); a tab that was only probing for one (restore) does not.
      const held = this.#state === 'signedin';
      this.#signOut(held ? err.reason : REASON_NO_SESSION, held);
    }
    throw err;
  }

  /**
   * @param {TokenPair} pair
   * @param {boolean} broadcast
   */
  #accept(pair, broadcast) {
    if (typeof pair?.access_token !== 'string' || !pair.access_token) {
      throw new IdentityError('identity answered without an access token', 0, 'INVALID_RESPONSE');
    }
    const lifetimeMs = Math.max(0, Number(pair.expires_in) || 0) * 1000;
    if (this.#mode === 'bearer' && pair.refresh_token) this.#refreshToken = pair.refresh_token;
    this.#setAccess({ token: pair.access_token, expiresAt: this.#now() + lifetimeMs, lifetimeMs, claims: decodeClaims(pair.access_token) });
    if (broadcast) this.#broadcastToken();
  }

  #broadcastToken() {
    const a = this.#access;
    if (a) this.#broadcast({ type: 'token', token: a.token, expiresAt: a.expiresAt, lifetimeMs: a.lifetimeMs });
  }

  /** @param {Access} access */
  #setAccess(access) {
    const before = this.#state === 'signedin' ? this.username : null;
    this.#access = access;
    this.#state = 'signedin';
    this.#endedSid = '';
    this.#peerRefreshingUntil = 0;
    if (before !== this.username) {
      this.dispatchEvent(new CustomEvent('signedin', { detail: { username: this.username, claims: access.claims } }));
    }
    this.dispatchEvent(new CustomEvent('token', { detail: { expiresAt: access.expiresAt } }));
  }

  /**
   * @param {string} reason
   * @param {boolean} broadcast
   * @param {boolean} [fromOtherTab]
   */
  #signOut(reason, broadcast, fromOtherTab = false) {
    const was = this.#state;
    const sid = this.#access?.claims.sid ?? '';
    if (sid) this.#endedSid = sid;
    this.#access = null;
    this.#refreshToken = '';
    this.#state = 'signedout';
    this.#peerRefreshingUntil = 0;
    if (broadcast) this.#broadcast({ type: 'signedout', reason, sid });
    if (was !== 'signedout') this.dispatchEvent(new CustomEvent('signedout', { detail: { reason, fromOtherTab } }));
  }

  /** @param {unknown} data */
  #onMessage(data) {
    const m = /** @type {Message} */ (data);
    switch (m?.type) {
      case 'token': {
        if (typeof m.token !== 'string' || typeof m.expiresAt !== 'number') return;
        const claims = decodeClaims(m.token);
        // A late message of a session that has ended (it crossed our logout).
        if (this.#endedSid && claims.sid === this.#endedSid) return;
        if (this.#access && this.#access.expiresAt > m.expiresAt) return;
        this.#setAccess({ token: m.token, expiresAt: m.expiresAt, lifetimeMs: m.lifetimeMs, claims });
        break;
      }
      case 'signedout':
        // Another session's end (this tab has since signed in anew) is not ours.
        if (m.sid && this.#access?.claims.sid && this.#access.claims.sid !== m.sid) return;
        this.#signOut(m.reason, false, true);
        break;
      case 'hello':
        if (this.#access && !this.#nearExpiry()) this.#broadcastToken();
        return;
      case 'refreshing':
        this.#peerRefreshingUntil = m.until;
        return;
      default:
        return;
    }
    for (const wake of this.#peerWaiters) wake();
    this.#peerWaiters.clear();
  }

  /**
   * Resolves at the next token or signedout message from another tab, or
   * after ms.
   * @param {number} ms
   * @returns {Promise<void>}
   */
  #nextPeerMessage(ms) {
    if (!this.#channel) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#peerWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#peerWaiters.add(done);
    });
  }

  /** @param {Message} m */
  #broadcast(m) {
    try {
      this.#channel?.postMessage(m);
    } catch {
      // a closed channel: this tab no longer coordinates
    }
  }

  /**
   * @param {string} path
   * @param {unknown} body
   * @returns {Promise<Response>}
   */
  #post(path, body) {
    /** @type {Record<string, string>} */
    const headers = { 'Content-Type': 'application/json' };
    if (this.#mode === 'cookie') headers[HEADER_CLIENT] = 'browser';
    return this.#fetch(this.#base + path, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      // The cookie must go (and be accepted) even when identity is on
      // another origin; CORS lets only allowlisted origins do that.
      credentials: this.#mode === 'cookie' ? 'include' : 'omit',
      cache: 'no-store',
      signal: AbortSignal.timeout(this.#requestTimeoutMs),
    });
  }

  /**
   * @param {RequestInfo | URL} input
   * @param {RequestInit} init
   * @param {string} token
   * @returns {Promise<Response>}
   */
  #send(input, init, token) {
    const isRequest = typeof Request !== 'undefined' && input instanceof Request;
    const headers = new Headers(init.headers ?? (isRequest ? input.headers : undefined));
    headers.set('Authorization', `Bearer ${token}`);
    // A Request's body can be read once: send a copy, keep the original for a replay.
    return this.#fetch(isRequest ? input.clone() : input, { ...init, headers });
  }
}

function signedOutError() {
  return new IdentityError('not signed in', 0, REASON_SIGNED_OUT);
}
