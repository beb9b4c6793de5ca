// @ts-check
// The demo page's script (loaded as a module file: the page's CSP allows no
// inline script). Element ids are the page's test contract.
import { IdentityClient, IdentityError } from './identity-client.js';

const client = new IdentityClient({ mode: 'cookie' });

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
const form = /** @type {HTMLFormElement} */ (el('login-form'));
const username = /** @type {HTMLInputElement} */ (el('username'));
const password = /** @type {HTMLInputElement} */ (el('password'));
const error = el('error');
const calls = el('calls');
const expiry = el('expiry');
const events = el('events');
const call = /** @type {HTMLButtonElement} */ (el('call'));
const logout = /** @type {HTMLButtonElement} */ (el('logout'));
const logoutAll = /** @type {HTMLButtonElement} */ (el('logout-all'));

function render() {
  const on = client.signedIn;
  status.textContent = on ? `signed in as ${client.username}` : 'signed out';
  status.classList.toggle('signed-in', on);
  form.hidden = on;
  logout.disabled = !on;
  logoutAll.disabled = !on;
  expiry.textContent = on ? `access token expires at ${new Date(client.expiresAt).toLocaleTimeString()} (kept in memory only)` : '';
}

/** @param {string} text */
function note(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  events.prepend(li);
  while (events.children.length > 50) events.lastElementChild?.remove();
}

/** @param {unknown} err */
function describe(err) {
  if (err instanceof IdentityError) return err.reason ? `${err.reason}: ${err.message}` : err.message;
  return err instanceof Error ? err.message : String(err);
}

client.addEventListener('signedin', () => { note(`signed in as ${client.username}`); render(); });
client.addEventListener('token', () => { note('new access token'); render(); });
client.addEventListener('signedout', (ev) => {
  const { reason, fromOtherTab } = /** @type {CustomEvent<{reason: string, fromOtherTab: boolean}>} */ (ev).detail;
  note(reason === 'NO_SESSION' ? 'no session: log in' : `signed out (${reason}${fromOtherTab ? ', in another tab' : ''})`);
  calls.textContent = '';
  render();
});

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.textContent = '';
  try {
    await client.login(username.value, password.value);
    password.value = '';
  } catch (err) {
    error.textContent = describe(err);
  }
});

call.addEventListener('click', async () => {
  calls.textContent = '…';
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => client.fetch('/v1/me')));
  const ok = results.filter((r) => r.status === 'fulfilled' && r.value.ok).length;
  const failed = results.find((r) => r.status === 'rejected');
  calls.textContent = `ok ${ok}/10`;
  if (failed) note(`calls failed: ${describe(/** @type {PromiseRejectedResult} */ (failed).reason)}`);
});

/** @param {boolean} allSessions */
async function signOut(allSessions) {
  try {
    await client.logout({ allSessions });
  } catch (err) {
    error.textContent = describe(err);
  }
}
logout.addEventListener('click', () => signOut(false));
logoutAll.addEventListener('click', () => signOut(true));

render();
// Resume the session of the cookie (or of another open tab) after a load.
client.restore().then((ok) => { if (ok) note('session restored'); render(); });
