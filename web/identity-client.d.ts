/**
 * @param {string} token
 * @returns {Claims}
 */
export function decodeClaims(token: string): Claims;
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
export const HEADER_CLIENT: "X-Identity-Client";
/** Rejection reason of calls made while signed out (no request is sent). */
export const REASON_SIGNED_OUT: "SIGNED_OUT";
/** `signedout` reason when a probe for a session (restore) found none. */
export const REASON_NO_SESSION: "NO_SESSION";
/** An error answer of identity (or SIGNED_OUT, raised by the client itself). */
export class IdentityError extends Error {
    /**
     * Reads identity's error body ({code, message, details: [ErrorInfo]}).
     * @param {Response} res
     * @returns {Promise<IdentityError>}
     */
    static from(res: Response): Promise<IdentityError>;
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
    static fromBody(status: number, body: unknown, options?: {
        cause?: unknown;
    }): IdentityError;
    /**
     * @param {string} message
     * @param {number} status HTTP status (0 when no request was made)
     * @param {string} reason the ErrorInfo reason, e.g. TOKEN_EXPIRED
     * @param {{cause?: unknown, retryAfter?: number}} [options] cause: what failed, e.g. the
     *   call's own error; retryAfter: seconds to wait before trying again (RATE_LIMITED)
     */
    constructor(message: string, status: number, reason: string, options?: {
        cause?: unknown;
        retryAfter?: number;
    });
    status: number;
    reason: string;
    /** Seconds to wait before trying again (a 429's Retry-After); 0 when not given. */
    retryAfter: number;
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
    /** @param {Options} [options] */
    constructor(options?: Options);
    /** @returns {Mode} */
    get mode(): Mode;
    /** @returns {string} identity's REST API as given (no trailing slash; '' = this page's origin) */
    get baseUrl(): string;
    /** True while the client holds a session (its access token may need a refresh). */
    get signedIn(): boolean;
    /** @returns {Claims | null} unverified claims of the current access token */
    get claims(): Claims | null;
    /** @returns {string} the signed-in user's name ('' when signed out) */
    get username(): string;
    /** @returns {number} when the access token expires (ms since the epoch; 0 when none) */
    get expiresAt(): number;
    /** Stops listening to other tabs. */
    close(): void;
    /**
     * Logs in. In cookie mode the refresh token arrives as an HttpOnly cookie
     * and every tab of this origin becomes signed in.
     * @param {string} username
     * @param {string} password
     * @returns {Promise<Claims>}
     */
    login(username: string, password: string): Promise<Claims>;
    /**
     * Resumes the session after a page load (cookie mode): takes the access
     * token of another signed-in tab if one answers quickly, else refreshes
     * from the cookie. Resolves to whether a session is available.
     * @returns {Promise<boolean>}
     */
    restore(): Promise<boolean>;
    /**
     * Refreshes now (single-flight, coordinated across tabs) and resolves to
     * the new access token.
     * @returns {Promise<string>}
     */
    refresh(): Promise<string>;
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
    fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
    /**
     * An access token fit for a call now, for code that sends its own
     * requests (identity-axios.js does): the current one, or, when it expires
     * within the refresh margin, a new one from the same single-flight,
     * cross-tab refresh as `fetch`. Rejects with IdentityError SIGNED_OUT,
     * without a request, when there is no session, and like `refresh()`
     * when the refresh fails.
     * @returns {Promise<string>}
     */
    accessToken(): Promise<string>;
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
    retryToken(token: string, reason: string): Promise<string>;
    /**
     * Logs out this session (or, with allSessions, every session of the user)
     * and signs out every tab. The local sign-out happens even when identity
     * cannot be reached; the error (other than "already gone") is rethrown.
     * @param {{allSessions?: boolean}} [options]
     * @returns {Promise<void>}
     */
    logout({ allSessions }?: {
        allSessions?: boolean;
    }): Promise<void>;
    #private;
}
export type Mode = "cookie" | "bearer";
export type Options = {
    /**
     * where identity's REST API is ('' = this page's origin)
     */
    baseUrl?: string | undefined;
    /**
     * 'cookie' (default) or 'bearer'
     */
    mode?: Mode | undefined;
    /**
     * the fetch to use (tests inject one)
     */
    fetch?: typeof fetch | undefined;
    /**
     * refresh when the access token expires within this
     * time (default 30 s, at most a quarter of the token's lifetime)
     */
    refreshBeforeMs?: number | undefined;
    /**
     * Web Locks (default navigator.locks; null: none)
     */
    locks?: LockManager | null | undefined;
    /**
     * (default the global; null: none)
     */
    BroadcastChannel?: BroadcastChannelConstructor | null | undefined;
    /**
     * name of the cross-tab lock and channel (default from baseUrl)
     */
    channelName?: string | undefined;
    /**
     * how long to wait for another tab's result before
     * refreshing anyway (default 250 ms; the claim fallback waits 20 times this)
     */
    peerWaitMs?: number | undefined;
    /**
     * how long restore() asks other tabs for their token
     * before refreshing from the cookie (default 150 ms)
     */
    helloWaitMs?: number | undefined;
    /**
     * deadline of a login, refresh or logout request
     * (default 15 s): a refresh holds the cross-tab lock, so it must not hang
     */
    requestTimeoutMs?: number | undefined;
    /**
     * clock in ms (default Date.now)
     */
    now?: (() => number) | undefined;
};
export type BroadcastChannelConstructor = new (name: string) => BroadcastChannel;
/**
 * The JSON of identity's TokenPair (proto field names).
 */
export type TokenPair = {
    access_token: string;
    token_type?: string | undefined;
    /**
     * seconds
     */
    expires_in: number;
    /**
     * empty in cookie mode
     */
    refresh_token?: string | undefined;
    session_id?: string | undefined;
};
/**
 * Unverified claims of the access token, for display only: the server
 * verifies tokens, the client just reads who it is signed in as.
 */
export type Claims = {
    sub?: string;
    sid?: string;
    preferred_username?: string;
    roles?: string[];
    exp?: number;
    [k: string]: unknown;
};
export type Access = {
    token: string;
    /**
     * ms since the epoch, by this machine's clock
     */
    expiresAt: number;
    lifetimeMs: number;
    claims: Claims;
};
/**
 * Messages between tabs. Only access tokens cross (memory to memory);
 * the refresh token stays in its HttpOnly cookie.
 */
export type Message = {
    type: "token";
    token: string;
    expiresAt: number;
    lifetimeMs: number;
} | {
    type: "signedout";
    reason: string;
    sid?: string;
} | {
    type: "hello";
} | {
    type: "refreshing";
    until: number;
};
