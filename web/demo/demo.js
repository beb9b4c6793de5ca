// @ts-check
// The demo page's script (loaded as a module file: the page's CSP allows no
// inline script, and Trusted Types no HTML from strings: the DOM is built
// with createElement and textContent). Element ids are the page's test
// contract.
import { IdentityClient, IdentityError } from './identity-client.js';
import { describeDevice, errorSentence, exactTime, relativeTime, signedOutSentence } from './format.js';

// ?hello=<ms> sets how long a new tab waits for an open one's token
// before it refreshes with the cookie itself (the client's default is
// short, for a fast first load); the tests give a loaded machine longer.
const helloWaitMs = Number(new URLSearchParams(location.search).get('hello')) || undefined;
const client = new IdentityClient({ mode: 'cookie', helloWaitMs });

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
function el(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing`);
  return /** @type {T} */ (e);
}

const status = el('status');
const notice = el('notice');
const form = /** @type {HTMLFormElement} */ (el('login-form'));
const username = /** @type {HTMLInputElement} */ (el('username'));
const password = /** @type {HTMLInputElement} */ (el('password'));
const loginButton = /** @type {HTMLButtonElement} */ (el('login'));
const error = el('error');
const account = el('account');
const sessionsList = el('sessions');
const sessionsAlone = el('sessions-alone');
const sessionsError = el('sessions-error');
const sessionsDone = el('sessions-done');
const sessionsRefresh = /** @type {HTMLButtonElement} */ (el('sessions-refresh'));
const revokeOthers = /** @type {HTMLButtonElement} */ (el('revoke-others'));
const passwordForm = /** @type {HTMLFormElement} */ (el('password-form'));
const passwordUsername = /** @type {HTMLInputElement} */ (el('password-username'));
const currentPassword = /** @type {HTMLInputElement} */ (el('current-password'));
const newPassword = /** @type {HTMLInputElement} */ (el('new-password'));
const changePassword = /** @type {HTMLButtonElement} */ (el('change-password'));
const passwordError = el('password-error');
const passwordDone = el('password-done');
const calls = el('calls');
const expiry = el('expiry');
const events = el('events');
const call = /** @type {HTMLButtonElement} */ (el('call'));
const logout = /** @type {HTMLButtonElement} */ (el('logout'));
const logoutAll = /** @type {HTMLButtonElement} */ (el('logout-all'));

/**
 * One of the caller's sessions, as `GET /v1/me/sessions` lists it.
 * @typedef {object} MySession
 * @property {string} session_id
 * @property {string} created_at RFC 3339
 * @property {string} last_used_at RFC 3339
 * @property {string} expires_at RFC 3339
 * @property {string} user_agent
 * @property {string} client_address
 * @property {boolean} current
 */

/** @type {MySession[]} the list as last loaded */
let sessions = [];
/** When the list was last loaded (ms), 0: never since sign-in. */
let sessionsLoadedAt = 0;
/** Only the newest load draws the list. */
let loadSeq = 0;
/** Revocations in flight: the list's buttons wait. */
let revoking = false;

function render() {
  const on = client.signedIn;
  status.textContent = on ? `signed in as ${client.username}` : 'signed out';
  status.classList.toggle('signed-in', on);
  form.hidden = on;
  account.hidden = !on;
  logout.disabled = !on;
  logoutAll.disabled = !on;
  expiry.textContent = on ? `Access token expires at ${new Date(client.expiresAt).toLocaleTimeString()} (kept in memory only).` : '';
}

/** @param {string} text */
function note(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  events.prepend(li);
  while (events.children.length > 50) events.lastElementChild?.remove();
}

/**
 * A call to identity's REST API with this session's access token; resolves
 * to the answer's JSON, rejects with IdentityError (or what fetch threw).
 * @param {string} path
 * @param {{method?: string, body?: unknown}} [options]
 * @returns {Promise<any>}
 */
async function api(path, { method = 'GET', body } = {}) {
  /** @type {RequestInit} */
  const init = { method, cache: 'no-store' };
  if (body !== undefined) {
    init.headers = { 'Content-Type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  const res = await client.fetch(`${client.baseUrl}${path}`, init);
  if (!res.ok) throw await IdentityError.from(res);
  return res.json();
}

/**
 * Shows err's sentence in out; a RATE_LIMITED answer with a delay also
 * holds button back and counts down until it may be tried again.
 * @param {HTMLElement} out
 * @param {unknown} err
 * @param {import('./format.js').Action} action
 * @param {HTMLButtonElement} [button]
 */
function showError(out, err, action, button) {
  out.textContent = errorSentence(err, action);
  if (!(err instanceof IdentityError) || err.reason !== 'RATE_LIMITED' || !err.retryAfter || !button) return;
  let left = err.retryAfter;
  button.disabled = true;
  const tick = setInterval(() => {
    left -= 1;
    if (left > 0) {
      out.textContent = errorSentence(new IdentityError(err.message, err.status, err.reason, { retryAfter: left }), action);
      return;
    }
    clearInterval(tick);
    out.textContent = '';
    button.disabled = false;
  }, 1000);
}

// --- sign in and out ------------------------------------------------------

client.addEventListener('signedin', () => {
  note(`signed in as ${client.username}`);
  notice.textContent = '';
  passwordUsername.value = client.username;
  render();
  loadSessions();
});
client.addEventListener('token', () => { note('new access token'); render(); });
client.addEventListener('signedout', (ev) => {
  const { reason, fromOtherTab } = /** @type {CustomEvent<{reason: string, fromOtherTab: boolean}>} */ (ev).detail;
  note(reason === 'NO_SESSION' ? 'no session: sign in' : `signed out (${reason}${fromOtherTab ? ', in another tab' : ''})`);
  notice.textContent = signedOutSentence(reason, fromOtherTab);
  calls.textContent = '';
  loadSeq++;
  sessions = [];
  sessionsLoadedAt = 0;
  sessionsList.replaceChildren();
  sessionsAlone.hidden = true;
  for (const out of [sessionsError, sessionsDone, passwordError, passwordDone]) out.textContent = '';
  currentPassword.value = '';
  newPassword.value = '';
  render();
});

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.textContent = '';
  loginButton.disabled = true;
  try {
    await client.login(username.value, password.value);
    password.value = '';
    loginButton.disabled = false;
  } catch (err) {
    loginButton.disabled = false;
    showError(error, err, 'login', loginButton);
  }
});

call.addEventListener('click', async () => {
  calls.textContent = '…';
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => client.fetch('/v1/me')));
  const ok = results.filter((r) => r.status === 'fulfilled' && r.value.ok).length;
  const failed = results.find((r) => r.status === 'rejected');
  calls.textContent = `ok ${ok}/10`;
  if (failed) note(`calls failed: ${errorSentence(/** @type {PromiseRejectedResult} */ (failed).reason, 'call')}`);
});

/** @param {boolean} allSessions */
async function signOut(allSessions) {
  try {
    await client.logout({ allSessions });
  } catch (err) {
    // Signed out here anyway; say what identity could not do.
    notice.textContent = `Signed out on this device, but ${errorSentence(err, 'call').replace(/^./, (c) => c.toLowerCase())}`;
  }
}
logout.addEventListener('click', () => signOut(false));
logoutAll.addEventListener('click', () => signOut(true));

// --- the devices list -----------------------------------------------------

/** @param {string} rfc3339 */
const ms = (rfc3339) => Date.parse(rfc3339);

/**
 * A <time> that says when in words and, in its title, exactly.
 * @param {string} rfc3339
 * @param {number} now
 */
function timeElement(rfc3339, now) {
  const t = document.createElement('time');
  const at = ms(rfc3339);
  if (Number.isFinite(at)) {
    t.dateTime = new Date(at).toISOString();
    t.dataset.at = String(at);
  }
  t.title = exactTime(at);
  t.textContent = relativeTime(at, now);
  return t;
}

/**
 * @param {MySession} s
 * @param {number} now
 */
function sessionItem(s, now) {
  const li = document.createElement('li');
  li.className = s.current ? 'session current' : 'session';
  li.dataset.sessionId = s.session_id;

  const head = document.createElement('div');
  head.className = 'session-head';
  const device = document.createElement('span');
  device.className = 'device';
  device.textContent = describeDevice(s.user_agent);
  device.title = s.user_agent || 'no User-Agent was sent';
  head.append(device);
  if (s.current) {
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = 'this device';
    head.append(badge);
  }

  const meta = document.createElement('p');
  meta.className = 'meta';
  const address = document.createElement('span');
  address.className = 'address';
  address.textContent = s.client_address || 'unknown address';
  const created = document.createElement('span');
  created.className = 'created';
  created.append('signed in ', timeElement(s.created_at, now));
  const used = document.createElement('span');
  used.className = 'last-used';
  used.append('last active ', timeElement(s.last_used_at, now));
  meta.append(address, created, used);

  const body = document.createElement('div');
  body.className = 'session-body';
  body.append(head, meta);
  li.append(body);

  if (!s.current) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'revoke';
    button.textContent = 'Sign out';
    button.setAttribute('aria-label', `Sign out ${device.textContent}, ${address.textContent}`);
    button.disabled = revoking;
    button.addEventListener('click', () => revokeOne(s, button));
    li.append(button);
  }
  return li;
}

function renderSessions() {
  const now = Date.now();
  // This device first, then the most recently used.
  const ordered = [...sessions].sort((a, b) => Number(b.current) - Number(a.current) || ms(b.last_used_at) - ms(a.last_used_at));
  sessionsList.replaceChildren(...ordered.map((s) => sessionItem(s, now)));
  const alone = !sessions.some((s) => !s.current);
  sessionsAlone.hidden = !alone;
  revokeOthers.disabled = revoking || alone;
}

/** Loads the list of this account's sessions and draws it. */
async function loadSessions() {
  const seq = ++loadSeq;
  sessionsList.setAttribute('aria-busy', 'true');
  sessionsRefresh.disabled = true;
  try {
    const body = await api('/v1/me/sessions');
    if (seq !== loadSeq) return;
    sessions = Array.isArray(body?.sessions) ? body.sessions : [];
    sessionsLoadedAt = Date.now();
    sessionsError.textContent = '';
    renderSessions();
  } catch (err) {
    // A session that ended meanwhile is the signedout event's to explain.
    if (seq === loadSeq && client.signedIn) sessionsError.textContent = errorSentence(err, 'sessions');
  } finally {
    if (seq === loadSeq) {
      sessionsList.setAttribute('aria-busy', 'false');
      sessionsRefresh.disabled = false;
    }
  }
}

/** @param {MySession} s */
const revokeSession = (s) => api(`/v1/me/sessions/${encodeURIComponent(s.session_id)}/revoke`, { method: 'POST', body: {} });

/**
 * @param {boolean} on
 */
function setRevoking(on) {
  revoking = on;
  for (const b of sessionsList.querySelectorAll('button')) b.disabled = on;
  revokeOthers.disabled = on || !sessions.some((s) => !s.current);
}

/**
 * Signs one other device out (RevokeMySession).
 * @param {MySession} s
 * @param {HTMLButtonElement} button
 */
async function revokeOne(s, button) {
  sessionsError.textContent = '';
  sessionsDone.textContent = '';
  setRevoking(true);
  button.textContent = 'Signing out…';
  const device = `${describeDevice(s.user_agent)} (${s.client_address || 'unknown address'})`;
  try {
    await revokeSession(s);
    sessionsDone.textContent = `${device} was signed out.`;
    note(`signed out ${device}`);
  } catch (err) {
    if (!client.signedIn) return;
    sessionsError.textContent = errorSentence(err, 'revoke');
  } finally {
    setRevoking(false);
  }
  await loadSessions();
}

/** Signs out every session but this one: one RevokeMySession each. */
revokeOthers.addEventListener('click', async () => {
  sessionsError.textContent = '';
  sessionsDone.textContent = '';
  const others = sessions.filter((s) => !s.current);
  if (!others.length) return;
  setRevoking(true);
  const results = await Promise.allSettled(others.map(revokeSession));
  setRevoking(false);
  if (!client.signedIn) return;
  // One that had ended already is signed out all the same.
  const failed = results.flatMap((r) => (r.status === 'rejected' && !(r.reason instanceof IdentityError && r.reason.reason === 'NOT_FOUND') ? [r.reason] : []));
  const done = others.length - failed.length;
  if (done) {
    sessionsDone.textContent = `Signed out ${done} other ${done === 1 ? 'device' : 'devices'}.`;
    note(`signed out ${done} other ${done === 1 ? 'session' : 'sessions'}`);
  }
  if (failed.length) {
    const still = failed.length === 1 ? 'One device is still signed in' : `${failed.length} devices are still signed in`;
    sessionsError.textContent = `${still}: ${errorSentence(failed[0], 'revoke').replace(/^./, (c) => c.toLowerCase())}`;
  }
  await loadSessions();
});

sessionsRefresh.addEventListener('click', () => {
  sessionsError.textContent = '';
  sessionsDone.textContent = '';
  loadSessions();
});

// "5 minutes ago" moves on by itself; back on a tab after a while, reload.
setInterval(() => {
  const now = Date.now();
  for (const t of sessionsList.querySelectorAll('time[data-at]')) {
    t.textContent = relativeTime(Number(/** @type {HTMLElement} */ (t).dataset.at), now);
  }
}, 15_000);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && client.signedIn && Date.now() - sessionsLoadedAt > 60_000) loadSessions();
});

// --- the password ---------------------------------------------------------

passwordForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  passwordError.textContent = '';
  passwordDone.textContent = '';
  changePassword.disabled = true;
  changePassword.textContent = 'Changing…';
  /** @type {unknown} */
  let failure = null;
  try {
    await api('/v1/me/password', { method: 'POST', body: { current_password: currentPassword.value, new_password: newPassword.value } });
  } catch (err) {
    failure = err;
  }
  changePassword.textContent = 'Change password';
  changePassword.disabled = false;
  if (!client.signedIn) return;
  if (failure) {
    showError(passwordError, failure, 'password', changePassword);
    if (failure instanceof IdentityError && failure.reason === 'INVALID_CREDENTIALS') {
      currentPassword.select();
    }
    return;
  }
  currentPassword.value = '';
  newPassword.value = '';
  passwordDone.textContent = 'Password changed. Your other sessions were signed out; this device stays signed in.';
  note('password changed: the other sessions were signed out');
  await loadSessions();
});

render();
// Resume the session of the cookie (or of another open tab) after a load.
client.restore().then((ok) => { if (ok) note('session restored'); render(); });
