// The chat page: plain JS, same-origin fetch with the session cookie, no framework, no build step.
// Every piece of data (titles, messages, the LLM's answers, file names, document text, error details)
// is rendered with textContent, never as HTML: the LLM's output and the users' files are untrusted.

const PAGE_SIZE = 20;
const POLL_MS = 1000; // how often a document still being processed is asked about
const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  conversationId: "", // "" = a new conversation, created by the first message
  cursor: null, // next_cursor of the last history page
  messagesCursor: null, // next_cursor of the oldest page of messages shown: earlier ones are left to load
  busy: false, // a message is being answered
  documentsEnabled: false, // the server has the documents API (it answers 503 when it is not configured)
  documents: new Map(), // document_id -> the document as last seen
  documentsCursor: null,
  uploadDocumentId: null, // the document the upload area reports on
  pollTimer: null,
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
  resetDocuments();
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
  await loadDocuments(true);
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
  setEarlier(null);
  $("message").focus();
}

function messageItem(role, content, status) {
  const item = document.createElement("li");
  item.className = `message ${role}${status === "complete" ? "" : " failed"}`;
  item.textContent = content;
  return item;
}

function addMessage(role, content, status = "complete") {
  const item = messageItem(role, content, status);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// A page of stored messages (oldest first), each answer with its sources, ready to insert.
function storedMessages(messages) {
  const fragment = document.createDocumentFragment();
  for (const message of messages) {
    const item = messageItem(message.role, message.content, message.status);
    fragment.append(item);
    addSources(item, message.sources);
  }
  return fragment;
}

function setEarlier(cursor) {
  state.messagesCursor = cursor;
  $("earlier").hidden = !cursor;
}

// history/detail answers the newest page of messages; older ones load on demand ("Earlier messages").
async function openConversation(id) {
  if (state.busy) return;
  const detail = await api("/api/v1/history/detail", { cnvs_idt_id: id });
  setConversation(detail.cnvs_idt_id, detail.title);
  $("messages").replaceChildren(storedMessages(detail.messages));
  setEarlier(detail.next_cursor);
  $("messages").lastElementChild?.scrollIntoView({ block: "end" });
  showStatus("");
}

async function loadEarlier() {
  const id = state.conversationId;
  $("earlier").disabled = true; // one request per page: a second click would insert it twice
  try {
    const page = await api("/api/v1/history/detail", { cnvs_idt_id: id, cursor: state.messagesCursor });
    if (id !== state.conversationId) return; // another conversation was opened meanwhile
    const first = $("messages").firstElementChild;
    $("messages").prepend(storedMessages(page.messages));
    setEarlier(page.next_cursor);
    first?.scrollIntoView({ block: "start" }); // the reader stays where they were
  } finally {
    $("earlier").disabled = false;
  }
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
    const body = { cnvs_idt_id: state.conversationId, message: text, stream: true };
    if (state.documentsEnabled && $("use-documents").checked) body.use_documents = true;
    const response = await request("/api/v1/chat/send", {
      body,
      headers: { "Idempotency-Key": randomKey(), Accept: "text/event-stream" },
    });
    $("message").value = "";
    for await (const { event: name, data } of serverEvents(response.body)) {
      if (name === "start") {
        if (!state.conversationId) setConversation(data.cnvs_idt_id, text.trim().slice(0, 60));
        state.conversationId = data.cnvs_idt_id;
      } else if (name === "sources") {
        addSources(answer, data.sources); // sent before the first delta
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

// ---- documents: /api/v1/documents (upload, list, delete) and the sources under answers ----------

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function documentStatus(doc) {
  const size = formatSize(doc.size_bytes);
  if (doc.status === "ready") return `Ready · ${doc.chunks} ${doc.chunks === 1 ? "part" : "parts"} · ${size}`;
  if (doc.status === "failed") return `Failed: ${doc.error || "the document could not be read."}`;
  return `Processing… · ${size}`;
}

function documentItem(doc) {
  const item = document.createElement("li");
  item.dataset.id = doc.document_id;
  const link = document.createElement("a"); // the original file, as uploaded
  link.href = `/api/v1/documents/${encodeURIComponent(doc.document_id)}/content`;
  link.className = "doc-name";
  const status = document.createElement("span");
  status.className = "doc-status";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Delete";
  remove.addEventListener("click", () => deleteDocument(doc.document_id).catch(report));
  item.append(link, remove, status);
  return item;
}

function documentElement(id) {
  return $("document-list").querySelector(`li[data-id="${CSS.escape(id)}"]`);
}

// Show a document (new or changed) in the list; `prepend` puts a new one on top (newest first).
function renderDocument(doc, prepend = false) {
  state.documents.set(doc.document_id, doc);
  let item = documentElement(doc.document_id);
  if (!item) {
    item = documentItem(doc);
    if (prepend) $("document-list").prepend(item);
    else $("document-list").append(item);
  }
  item.className = doc.status;
  const name = item.querySelector(".doc-name");
  name.textContent = doc.filename;
  name.title = doc.filename;
  item.querySelector(".doc-status").textContent = documentStatus(doc);
  item.querySelector("button").setAttribute("aria-label", `Delete ${doc.filename}`);
  if (doc.document_id === state.uploadDocumentId) setUpload(documentStatus(doc), doc.status === "failed");
  if (doc.status === "processing") schedulePoll();
}

function forgetDocument(id) {
  state.documents.delete(id);
  const item = documentElement(id);
  if (item) item.remove();
  if (id === state.uploadDocumentId) $("upload").hidden = true;
}

function resetDocuments() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  state.documents.clear();
  state.documentsCursor = null;
  state.uploadDocumentId = null;
  $("document-list").replaceChildren();
  $("upload").hidden = true;
}

function enableDocuments(enabled) {
  state.documentsEnabled = enabled;
  $("documents").hidden = !enabled;
  $("use-documents-switch").hidden = !enabled;
  if (!enabled) $("use-documents").checked = false;
}

async function loadDocuments(reset) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (!reset && state.documentsCursor) query.set("cursor", state.documentsCursor);
  let page;
  try {
    page = await api(`/api/v1/documents?${query}`, undefined, "GET");
  } catch (error) {
    // 503: this server has no document store configured; 404: a server from before documents.
    if (error instanceof ApiError && (error.status === 503 || error.status === 404)) return enableDocuments(false);
    throw error;
  }
  if (reset) resetDocuments();
  enableDocuments(true);
  for (const doc of page.items) renderDocument(doc);
  state.documentsCursor = page.next_cursor;
  $("more-documents").hidden = !page.next_cursor;
}

// One timer for every document still processing: ask about each, then again while any still is.
function schedulePoll() {
  if (state.pollTimer || !state.user) return;
  state.pollTimer = setTimeout(async () => {
    const pending = [...state.documents.values()].filter((doc) => doc.status === "processing");
    for (const doc of pending) {
      try {
        const fresh = await api(`/api/v1/documents/${encodeURIComponent(doc.document_id)}`, undefined, "GET");
        if (state.documents.has(fresh.document_id)) renderDocument(fresh); // unless deleted meanwhile
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) forgetDocument(doc.document_id);
        else if (error instanceof ApiError && error.status === 401) {
          state.pollTimer = null;
          return report(error);
        } // anything else (a restart, a 503): ask again at the next tick
      }
    }
    state.pollTimer = null;
    if ([...state.documents.values()].some((doc) => doc.status === "processing")) schedulePoll();
  }, POLL_MS);
}

function setUpload(text, failed = false) {
  $("upload").hidden = false;
  $("upload").classList.toggle("failed", failed);
  $("upload-status").textContent = text;
}

// XMLHttpRequest, not fetch: only it reports upload progress.
function postFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/documents");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => event.lengthComputable && onProgress(event.loaded / event.total));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300 && xhr.response) return resolve(xhr.response);
      reject(new ApiError(xhr.status, errorDetail(xhr.response, xhr.status), xhr.getResponseHeader("Retry-After")));
    });
    // A server that refuses a large body early may close the connection before the browser reads why.
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "The upload was interrupted: the file may be over the server's size limit, or the connection dropped.")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

async function upload() {
  const file = $("upload-file").files[0];
  if (!file) return;
  $("upload-file").disabled = true;
  state.uploadDocumentId = null;
  $("upload-name").textContent = file.name;
  $("upload-progress").hidden = false;
  $("upload-progress").value = 0;
  setUpload("Uploading… 0%");
  try {
    const doc = await postFile(file, (fraction) => {
      const percent = Math.round(fraction * 100);
      $("upload-progress").value = percent;
      setUpload(`Uploading… ${percent}%`);
    });
    $("upload-progress").hidden = true;
    state.uploadDocumentId = doc.document_id;
    renderDocument(doc, true);
  } catch (error) {
    $("upload-progress").hidden = true;
    if (error instanceof ApiError && error.status === 401) return report(error);
    setUpload(`Not uploaded: ${describe(error)}`, true);
  } finally {
    $("upload-file").value = ""; // choosing the same file again uploads it again
    $("upload-file").disabled = false;
  }
}

async function deleteDocument(id) {
  const doc = state.documents.get(id);
  if (!doc || !window.confirm(`Delete ${doc.filename}? Answers will no longer use it.`)) return;
  try {
    await api(`/api/v1/documents/${encodeURIComponent(id)}`, undefined, "DELETE");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error; // 404: already gone
  }
  forgetDocument(id);
}

// The document parts an answer was given, under it, numbered as the model saw them ([1], [2], ...).
function addSources(answerItem, sources) {
  if (!sources || !sources.length) return null;
  const item = document.createElement("li");
  item.className = "sources";
  const heading = document.createElement("span");
  heading.textContent = `Sources (${sources.length})`;
  const list = document.createElement("ol");
  sources.forEach((source, index) => {
    const entry = document.createElement("li");
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = `[${index + 1}] ${source.filename} · part ${source.chunk_index + 1}`;
    const text = document.createElement("p");
    text.className = "source-text";
    text.textContent = source.text;
    details.append(summary, text);
    entry.append(details);
    list.append(entry);
  });
  item.append(heading, list);
  answerItem.after(item);
  return item;
}

// ---- wiring -----------------------------------------------------------------------------------

function guarded(handler) {
  return (event) => Promise.resolve(handler(event)).catch(report);
}

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", guarded(logout));
$("new-chat").addEventListener("click", () => !state.busy && newConversation());
$("more").addEventListener("click", guarded(() => loadConversations(false)));
$("earlier").addEventListener("click", guarded(loadEarlier));
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
$("upload-file").addEventListener("change", guarded(upload));
$("more-documents").addEventListener("click", guarded(() => loadDocuments(false)));

start();
