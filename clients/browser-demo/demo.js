// The demo page: log in with `accounts`, join the lobby's room, chat, and show pushes and the
// connection's state live. The session's resume token is kept in `sessionStorage`, so a reload
// takes the session back (still logged in); "Log out" ends it. The gate's WebSocket address
// comes from `?ws=` (default: the default topology's ws://127.0.0.1:11010).
import { FireflyError, connectWebSocket } from "/client/index.js";

const ROOM = "lobby";
const CHAT_TOPIC = 900;
const $ = (id) => document.getElementById(id);
const url = new URLSearchParams(location.search).get("ws") ?? "ws://127.0.0.1:11010/";
let me = null;

function log(text, system = false) {
  const li = document.createElement("li");
  li.textContent = text;
  if (system) li.className = "system";
  $("log").append(li);
}

function status(text, kind) {
  $("status").textContent = text;
  $("status").className = kind;
}

const TOKEN = "firefly-demo-token";
const client = await connectWebSocket(url, {
  reconnect: { initialDelayMs: 100, maxDelayMs: 1000 },
  restore: sessionStorage.getItem(TOKEN) ?? undefined,
});
const keep = (ticket) => sessionStorage.setItem(TOKEN, ticket.token);
if (client.session) keep(client.session);
client.on("ticket", keep);
status(`connected (session ${client.session?.session ?? "?"})`, "connected");
client.onPush(CHAT_TOPIC, (notice) => log(notice.text));
client.on("disconnected", (reason) => status(`reconnecting… (${reason})`, "reconnecting"));
client.on("resumed", (t) => {
  status(`resumed: same session ${t.session}, ${t.replayed} missed push(es) replayed`, "connected");
  log(`connection resumed, ${t.replayed} missed`, true);
});
client.on("lost", (reason) => status(`session lost: ${reason}; log in again`, "lost"));
client.on("kicked", (error) => status(`kicked: ${error.message}`, "lost"));
client.on("closed", () => $("chat").disabled = true);

function loggedIn(text) {
  $("who").textContent = text;
  $("login").disabled = true;
  $("chat").disabled = false;
}

if (client.session?.resumed) {
  // A reload with a stored token: the same session, still logged in and in the room.
  me = await client.request(203);
  loggedIn(`logged in as ${me.username} (account ${me.account}, session restored)`);
  status(`restored: same session ${client.session.session}`, "connected");
}

async function login(username, password) {
  try {
    return await client.request(202, { username, password });
  } catch (error) {
    if (!(error instanceof FireflyError) || error.code !== "bad_credentials") throw error;
    await client.request(201, { username, password }); // a new player: register first
    return await client.request(202, { username, password });
  }
}

$("login-button").onclick = async () => {
  try {
    me = await login($("username").value, $("password").value);
    await client.request(108, { group: ROOM });
    loggedIn(`logged in as ${me.username} (account ${me.account})`);
    log(`${me.username} joined the room`, true);
  } catch (error) {
    $("who").textContent = `login failed: ${error.message}`;
  }
};

$("send").onclick = async () => {
  const text = $("message").value;
  $("message").value = "";
  try {
    await client.request(110, { group: ROOM, topic: CHAT_TOPIC, text: `${me.username}: ${text}` });
  } catch (error) {
    log(`not sent (${error.message})`, true);
  }
};

$("whoami").onclick = async () => {
  try {
    const who = await client.request(203);
    log(`the server says: you are ${who.username} (account ${who.account})`, true);
  } catch (error) {
    log(`whoami: ${error.code ?? error.message}`, true);
  }
};

$("logout").onclick = async () => {
  sessionStorage.removeItem(TOKEN);
  await client.logout();
  $("who").textContent = "logged out";
  status("logged out: the session ended", "lost");
};

window.demo = { client };
document.body.dataset.ready = "true";
