// The chat page: plain JS, same-origin fetch with the session cookie, no framework, no build step.
// Every piece of data (titles, messages, the LLM's answers, error details) is rendered with
// textContent, never as HTML: the LLM's output is untrusted.

const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  conversationId: "", // "" = a new conversation, created by the first message
  cursor: null, // next_cursor of the last history page
  busy: false, // a message is being answered
};

class ApiError extends Error {
  constructor(status, detail, retryAfter) {
    super(detail);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// ---- HTTP -------------------------------------------------------------------------------------

function errorDetail(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length && detail[0].msg) return detail[0].msg; // a 422
  return `The server answered ${status}.`;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): the status says enough
  }
  return new ApiError(response.status, errorDetail(body, response.status), response.headers.get("Retry-After"));
}

async function request(path, { method = "POST", body, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "Cannot reach the server; check your connection and retry.");
  }
  if (!response.ok) throw await failure(response);
  return response;
}

async function api(path, body, method = "POST") {
  const response = await request(path, { method, body });
  return response.status === 204 ? null : response.json();
}

// ---- status line and errors -------------------------------------------------------------------

function showStatus(text) {
  $("status").textContent = text;
  $("status").hidden = !text;
}

function describe(error) {
  if (!(error instanceof ApiError)) return `Unexpected error: ${error.message}`;
  if (error.status === 429) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again later.";
    return `Too many requests. ${error.message}${wait}`;
  }
  if (error.status === 502 || error.status === 503 || error.status === 504) {
    return `The assistant is unavailable (${error.status}): ${error.message}`;
  }
  if (error.status >= 500) return `Server error (${error.status}): ${error.message}`;
  if (error.status === 0) return error.message;
  return error.message;
}

// One place for every failure: a 401 means the session is gone, back to the login form.
function report(error) {
  if (error instanceof ApiError && error.status === 401 && state.user) {
    showLogin("Your session has ended. Please log in again.");
    return;
  }
  showStatus(describe(error));
}

// ---- views ------------------------------------------------------------------------------------

function showLogin(message = "") {
  state.user = null;
  $("account").hidden = true;
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login-password").value = "";
  showStatus(message);
  $("login-username").focus();
}

async function showChat(user) {
  state.user = user;
  $("username").textContent = user.username;
  $("account").hidden = false;
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  showStatus("");
  newConversation();
  await loadConversations(true);
}

// ---- auth -------------------------------------------------------------------------------------

async function start() {
  try {
    const response = await fetch("/api/v1/auth/me", { credentials: "same-origin" });
    if (response.ok) return showChat(await response.json());
    if (response.status === 401) return showLogin();
    throw await failure(response);
  } catch (error) {
    showLogin(describe(error instanceof ApiError ? error : new ApiError(0, "Cannot reach the server.")));
  }
}

async function login(event) {
  event.preventDefault();
  $("login-submit").disabled = true;
  showStatus("");
  try {
    await api("/api/v1/auth/login", { username: $("login-username").value, password: $("login-password").value });
    await showChat(await api("/api/v1/auth/me", undefined, "GET"));
  } catch (error) {
    $("login-password").value = "";
    showStatus(error instanceof ApiError && error.status === 401 ? "Wrong username or password." : describe(error));
  } finally {
    $("login-submit").disabled = false;
  }
}

async function logout() {
  try {
    await api("/api/v1/auth/logout");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) return report(error);
  }
  $("conversations").replaceChildren();
  $("messages").replaceChildren();
  showLogin("You are logged out.");
}

// ---- history ----------------------------------------------------------------------------------

function conversationItem(summary) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = summary.title;
  button.title = summary.title;
  button.dataset.id = summary.cnvs_idt_id;
  button.addEventListener("click", () => openConversation(summary.cnvs_idt_id).catch(report));
  item.append(button);
  return item;
}

function markCurrent() {
  for (const button of $("conversations").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(button.dataset.id === state.conversationId));
  }
}

async function loadConversations(reset) {
  const body = { page_size: PAGE_SIZE };
  if (!reset && state.cursor) body.cursor = state.cursor;
  const page = await api("/api/v1/history/list", body);
  const items = page.items.map(conversationItem);
  if (reset) $("conversations").replaceChildren(...items);
  else $("conversations").append(...items);
  state.cursor = page.next_cursor;
  $("more").hidden = !page.next_cursor;
  markCurrent();
}

function setConversation(id, title) {
  state.conversationId = id;
  $("conversation-title").textContent = title;
  $("rename").hidden = $("delete").hidden = !id;
  $("rename-form").hidden = true;
  markCurrent();
}

function newConversation() {
  setConversation("", "New conversation");
  $("messages").replaceChildren();
  $("message").focus();
}

function addMessage(role, content, status = "complete") {
  const item = document.createElement("li");
  item.className = `message ${role}${status === "complete" ? "" : " failed"}`;
  item.textContent = content;
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

async function openConversation(id) {
  if (state.busy) return;
  const detail = await api("/api/v1/history/detail", { cnvs_idt_id: id });
  setConversation(detail.cnvs_idt_id, detail.title);
  $("messages").replaceChildren();
  for (const message of detail.messages) addMessage(message.role, message.content, message.status);
  showStatus("");
}

async function rename(event) {
  event.preventDefault();
  const title = $("rename-title").value.trim();
  if (!title) return;
  const summary = await api("/api/v1/history/rename", { cnvs_idt_id: state.conversationId, title });
  setConversation(summary.cnvs_idt_id, summary.title);
  await loadConversations(true);
}

async function remove() {
  if (!window.confirm("Delete this conversation?")) return;
  await api("/api/v1/history/delete", { cnvs_idt_id: state.conversationId });
  newConversation();
  await loadConversations(true);
}

// ---- chat: POST /api/v1/chat/send with stream, read as server-sent events ---------------------

function randomKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Yields {event, data} for each SSE block of the body ("event: x\ndata: {json}\n\n").
async function* serverEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("message").value;
  if (state.busy || !text.trim()) return;
  state.busy = true;
  $("send").disabled = true;
  showStatus("");
  addMessage("user", text);
  const answer = addMessage("assistant", "");
  answer.classList.add("streaming");
  let finished = false;
  try {
    const response = await request("/api/v1/chat/send", {
      body: { cnvs_idt_id: state.conversationId, message: text, stream: true },
      headers: { "Idempotency-Key": randomKey(), Accept: "text/event-stream" },
    });
    $("message").value = "";
    for await (const { event: name, data } of serverEvents(response.body)) {
      if (name === "start") {
        if (!state.conversationId) setConversation(data.cnvs_idt_id, text.trim().slice(0, 60));
        state.conversationId = data.cnvs_idt_id;
      } else if (name === "delta") {
        answer.textContent += data.content;
        answer.scrollIntoView({ block: "end" });
      } else if (name === "end") {
        finished = true;
      } else if (name === "error") {
        finished = true;
        throw new ApiError(data.status || 502, data.detail || "The answer failed.");
      }
    }
    if (!finished) throw new ApiError(502, "The answer was cut off; please retry.");
  } catch (error) {
    answer.classList.add("failed");
    if (!answer.textContent) answer.textContent = "(no answer)";
    if (error instanceof ApiError && error.status >= 500 && !/retry/i.test(error.message)) {
      error.message += " Your message is saved; you can send it again.";
    }
    report(error);
  } finally {
    answer.classList.remove("streaming");
    state.busy = false;
    $("send").disabled = false;
  }
  if (state.user) {
    await loadConversations(true).catch(report);
    // The server titles a conversation from its first message: show the stored title.
    const current = $("conversations").querySelector(`button[data-id="${CSS.escape(state.conversationId)}"]`);
    if (current) $("conversation-title").textContent = current.textContent;
  }
}

// ---- wiring -----------------------------------------------------------------------------------

function guarded(handler) {
  return (event) => Promise.resolve(handler(event)).catch(report);
}

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", guarded(logout));
$("new-chat").addEventListener("click", () => !state.busy && newConversation());
$("more").addEventListener("click", guarded(() => loadConversations(false)));
$("composer").addEventListener("submit", send);
$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("rename").addEventListener("click", () => {
  $("rename-title").value = $("conversation-title").textContent;
  $("rename-form").hidden = false;
  $("rename-title").focus();
});
$("rename-cancel").addEventListener("click", () => ($("rename-form").hidden = true));
$("rename-form").addEventListener("submit", guarded(rename));
$("delete").addEventListener("click", guarded(remove));

start();
