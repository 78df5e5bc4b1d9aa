/*
 * Live inbox: the example browser client of jmap-twisted, in plain
 * JavaScript with no framework and no build step (walked through in
 * docs/browser.rst).  The numbered comments follow its flow:
 *
 * 1. sign in (the session, with credentials kept in memory only);
 * 2. a single-use ticket, then the RFC 8887 WebSocket (subprotocol "jmap");
 * 3. the inbox: Mailbox/query, Email/query, Email/get over the socket;
 * 4. push: on each StateChange, Email/changes + Email/get;
 * 5. a dropped socket: reconnect with backoff, a fresh ticket, the last
 *    pushState.
 *
 * window.jmapDemo exposes what tests and benchmarks read.
 */
'use strict';

const SESSION_URL = '/jmap/session';
const USING = ['urn:ietf:params:jmap:core', 'urn:ietf:params:jmap:mail'];
const MAIL = 'urn:ietf:params:jmap:mail';
const WEBSOCKET = 'urn:ietf:params:jmap:websocket';
const TICKETS = 'com:linagora:params:jmap:ws:ticket';
const PROPERTIES = ['subject', 'from', 'receivedAt', 'preview', 'mailboxIds'];
const FIRST_DELAY = 500; // ms before the first reconnection attempt
const MAX_DELAY = 30000; // and at most between two

const demo = (window.jmapDemo = {
  state: 'signed out', // the connection's state, as shown
  emails: 0, // mails in the list
  extensions: null, // the socket's negotiated extensions (ws.extensions)
  rendered: {}, // subject → when the mail was first shown (ms since the epoch)
});

let authorization = null; // 'Basic …' or 'Bearer …', in memory only
let session = null;
let accountId = null;
let inboxId = null;
let emailState = null; // the Email state the list reflects
let pushState = null; // from the last StateChange
let socket = null;
let delay = 0; // the last reconnection delay, ms
let timer = null;
let nextId = 0;
const pending = new Map(); // Request id → {resolve, reject}
const shown = new Map(); // Email id → its <li>

const $ = (id) => document.getElementById(id);

function setState(state) {
  $('state').textContent = demo.state = state;
}

function report(error) {
  console.error(error);
  $('problem').textContent = error.message;
}

// An Error with more fields (HTTP status, JMAP error type).
const failure = (message, fields) => Object.assign(new Error(message), fields);

// Basic credentials are UTF-8 (the server's challenge says charset="UTF-8");
// btoa() alone only takes Latin-1.
function basic(username, password) {
  const octets = new TextEncoder().encode(`${username}:${password}`);
  return 'Basic ' + btoa(String.fromCharCode(...octets));
}

// An HTTP request with the page's own credentials.  credentials: 'omit'
// keeps the browser from adding cached ones or prompting for a password.
async function http(url, method = 'GET') {
  const response = await fetch(url, {
    method,
    headers: { Authorization: authorization },
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!response.ok) throw failure(`${url}: HTTP ${response.status}`, { status: response.status });
  return response.json();
}

// 1. Sign in.
$('sign-in').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const token = form.token.value.trim();
  authorization = token ? 'Bearer ' + token : basic(form.username.value, form.password.value);
  form.reset(); // the password does not stay in the page's fields either
  $('problem').textContent = '';
  setState('signing in');
  try {
    session = await http(SESSION_URL);
  } catch (error) {
    signOut(error.status === 401 ? 'wrong credentials' : 'signed out');
    report(error);
    return;
  }
  accountId = session.primaryAccounts[MAIL];
  form.hidden = true;
  $('sign-out').hidden = false;
  connect();
});

$('sign-out').addEventListener('click', () => signOut('signed out'));

function signOut(state) {
  clearTimeout(timer);
  const ws = socket;
  socket = null; // so that its close event is not taken for a drop
  if (ws) ws.close(1000);
  failPending(new Error('signed out'));
  authorization = session = accountId = inboxId = emailState = pushState = null;
  shown.clear();
  $('inbox').replaceChildren();
  demo.emails = 0;
  $('sign-in').hidden = false;
  $('sign-out').hidden = true;
  setState(state);
}

// 2. A ticket, then the socket.
async function connect() {
  if (!session) return; // signed out meanwhile
  setState('connecting');
  let ticket;
  try {
    ticket = await http(session.capabilities[TICKETS].generationEndpoint, 'POST');
  } catch (error) {
    if (!session) return;
    if (error.status === 401) return signOut('credentials no longer accepted');
    return reconnectLater(); // the server is away or busy
  }
  if (!session) return;
  const url = session.capabilities[WEBSOCKET].url + '?ticket=' + encodeURIComponent(ticket.value);
  const ws = (socket = new WebSocket(url, 'jmap'));
  ws.onopen = () => opened(ws);
  ws.onmessage = (event) => received(JSON.parse(event.data));
  ws.onclose = () => closed(ws);
}

function opened(ws) {
  if (ws !== socket) return;
  delay = 0;
  demo.extensions = ws.extensions;
  $('extensions').textContent = ws.extensions || 'none';
  $('problem').textContent = '';
  setState('open');
  // 4. Push first, then list or catch up: a change in between is not
  // lost, since the resync reads from the list's own state.  With the last
  // pushState, the server at once sends a StateChange for what changed
  // while the socket was down.
  const enable = { '@type': 'WebSocketPushEnable', dataTypes: ['Email', 'Mailbox'] };
  if (pushState) enable.pushState = pushState;
  ws.send(JSON.stringify(enable));
  sync().catch(report);
}

// 5. A dropped socket: try again later, with a fresh ticket.
function closed(ws) {
  if (ws !== socket) return; // signed out
  socket = null;
  failPending(new Error('the socket closed'));
  reconnectLater();
}

function reconnectLater() {
  // Exponential backoff with jitter: pages do not all come back at once
  // after a server restart.
  delay = Math.min(MAX_DELAY, delay ? delay * 2 : FIRST_DELAY);
  const wait = delay / 2 + (Math.random() * delay) / 2;
  setState(`reconnecting in ${(wait / 1000).toFixed(1)} s`);
  timer = setTimeout(connect, wait);
}

function failPending(error) {
  for (const { reject } of pending.values()) reject(error);
  pending.clear();
}

// One RFC 8887 Request: method calls, answered by the Response whose
// requestId is the Request's id.  Method errors become exceptions.
async function call(methodCalls) {
  const id = 'r' + ++nextId;
  const responses = await new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) throw new Error('not connected');
    pending.set(id, { resolve, reject });
    socket.send(JSON.stringify({ '@type': 'Request', id, using: USING, methodCalls }));
  });
  for (const [name, args] of responses) {
    if (name === 'error') throw failure(args.description || args.type, { type: args.type });
  }
  return responses;
}

function settle(id, settler) {
  const waiting = pending.get(id);
  pending.delete(id);
  if (waiting) settler(waiting);
}

function received(message) {
  switch (message['@type']) {
    case 'Response':
      settle(message.requestId, ({ resolve }) => resolve(message.methodResponses));
      break;
    case 'RequestError': // a malformed Request, or over a limit
      if (message.requestId) settle(message.requestId, ({ reject }) => reject(new Error(message.detail)));
      else report(new Error(message.detail));
      break;
    case 'StateChange':
      pushState = message.pushState;
      if (message.changed[accountId] && message.changed[accountId].Email) sync().catch(report);
      break;
  }
}

// Syncs run one at a time; asking while one runs schedules one more.
let syncing = null;
let again = false;

function sync() {
  again = true;
  if (!syncing) {
    syncing = (async () => {
      try {
        while (again) {
          again = false;
          if (emailState === null) await loadInbox();
          else await resync();
        }
      } finally {
        syncing = null;
      }
    })();
  }
  return syncing;
}

// 3. The inbox: its id by role (RFC 8621 §2), then in one Request the
// Email state before the query (so a resync from it misses nothing), the
// newest 50 ids and their properties, by back-reference (RFC 8620 §3.7).
async function loadInbox() {
  const [[, mailboxes]] = await call([['Mailbox/query', { accountId, filter: { role: 'inbox' } }, 'm']]);
  if (!mailboxes.ids.length) throw new Error('this account has no inbox');
  inboxId = mailboxes.ids[0];
  const byReceived = [{ property: 'receivedAt', isAscending: false }];
  const [[, before], , [, got]] = await call([
    ['Email/get', { accountId, ids: [] }, 's'],
    ['Email/query', { accountId, filter: { inMailbox: inboxId }, sort: byReceived, limit: 50 }, 'q'],
    ['Email/get', { accountId, '#ids': { resultOf: 'q', name: 'Email/query', path: '/ids' }, properties: PROPERTIES }, 'g'],
  ]);
  for (const id of [...shown.keys()]) remove(id); // a fresh list (after cannotCalculateChanges)
  for (const email of got.list.reverse()) place(email); // oldest first: each goes on top
  emailState = before.state;
}

// What changed since the list's state: created and updated mails are
// placed (or removed when no longer in the inbox), destroyed ones removed.
async function resync() {
  for (let more = true; more; ) {
    const ids = (path) => ({ resultOf: 'c', name: 'Email/changes', path });
    let responses;
    try {
      responses = await call([
        ['Email/changes', { accountId, sinceState: emailState }, 'c'],
        ['Email/get', { accountId, '#ids': ids('/created'), properties: PROPERTIES }, 'n'],
        ['Email/get', { accountId, '#ids': ids('/updated'), properties: PROPERTIES }, 'u'],
      ]);
    } catch (error) {
      if (error.type !== 'cannotCalculateChanges') throw error;
      emailState = null; // too old: list afresh
      return loadInbox();
    }
    const [[, changes], [, created], [, updated]] = responses;
    for (const id of changes.destroyed) remove(id);
    for (const email of [...created.list, ...updated.list]) place(email);
    emailState = changes.newState;
    more = changes.hasMoreChanges;
  }
}

function remove(id) {
  const item = shown.get(id);
  if (item) item.remove();
  shown.delete(id);
  demo.emails = shown.size;
}

// Show a mail in order, newest first (and the latest placed first among
// mails received in the same second).  textContent, never innerHTML:
// subjects and names are written by strangers.
function place(email) {
  const seen = shown.has(email.id);
  remove(email.id);
  if (!email.mailboxIds[inboxId]) return;
  const item = document.createElement('li');
  item.dataset.receivedAt = email.receivedAt;
  const from = (email.from || []).map((address) => address.name || address.email).join(', ');
  for (const [name, text] of [
    ['from', from],
    ['date', new Date(email.receivedAt).toLocaleString()],
    ['subject', email.subject || '(no subject)'],
    ['preview', email.preview],
  ]) {
    const part = document.createElement('span');
    part.className = name;
    part.textContent = text;
    item.append(part);
  }
  const list = $('inbox');
  const older = [...list.children].find((other) => other.dataset.receivedAt <= email.receivedAt);
  list.insertBefore(item, older || null);
  shown.set(email.id, item);
  demo.emails = shown.size;
  if (!seen) demo.rendered[email.subject] = performance.timeOrigin + performance.now();
}
