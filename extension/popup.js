// The letter form: the extension's popup and side panel, and the service's own web page at "/" (same file).
// In the extension it reads the current tab (activeTab + scripting) and keeps the resume in chrome.storage;
// as a web page it talks to the service that served it and uses localStorage. letter-view.js draws the letter.
"use strict";

const IS_EXTENSION = typeof chrome !== "undefined" && Boolean(chrome.storage && chrome.storage.local);
// "popup" (Chrome's toolbar popup: cut at 600 px, closing it stops a letter), "panel" (the side panel, or the
// page in a tab) or "page" (the service's web page). ?view= forces one (the browser tests' 600 px popup).
const MODE = (() => {
  if (!IS_EXTENSION) return "page";
  const forced = new URLSearchParams(location.search).get("view");
  if (forced === "popup" || forced === "panel") return forced;
  const popups = chrome.extension && chrome.extension.getViews ? chrome.extension.getViews({type: "popup"}) : [];
  return popups.includes(window) ? "popup" : "panel";
})();
const DEFAULT_SERVICE = "http://127.0.0.1:8765";
const JOB_FIELDS = ["title", "company", "preferred_qualifications", "posting"];
const RESUME_FIELDS = ["name", "current_experience", "past_experience", "skills", "qualifications"];
const LIMIT_OF = {title: "max_short_chars", company: "max_short_chars", name: "max_short_chars",
                  posting: "max_posting_chars"}; // every other field: max_field_chars

const $ = (id) => document.getElementById(id);
const fieldEl = (part, name) => $(`${part}-${name}`);
let limits = {max_posting_chars: 12000};
let running = null; // AbortController of the request in flight
let untuned = false; // the service runs a base model that was never fine-tuned

// ---------------------------------------------------------------- storage (chrome.storage or localStorage)

const store = {
  async get(keys) {
    if (IS_EXTENSION) return chrome.storage.local.get(keys);
    const out = {};
    for (const key of keys) {
      const raw = localStorage.getItem(`coverlora.${key}`);
      if (raw !== null) { try { out[key] = JSON.parse(raw); } catch (e) { /* ignore a corrupt entry */ } }
    }
    return out;
  },
  async set(items) {
    if (IS_EXTENSION) return chrome.storage.local.set(items);
    for (const [key, value] of Object.entries(items)) localStorage.setItem(`coverlora.${key}`, JSON.stringify(value));
  },
};

async function settings() {
  if (!IS_EXTENSION) {
    return {serviceUrl: location.origin, token: $("page-token").value.trim()};
  }
  const saved = await store.get(["serviceUrl", "token"]);
  return {serviceUrl: (saved.serviceUrl || DEFAULT_SERVICE).replace(/\/+$/, ""), token: saved.token || ""};
}

function readPart(part, names) {
  const out = {};
  for (const name of names) out[name] = fieldEl(part, name).value.trim();
  return out;
}

function fillPart(part, values) {
  for (const [name, value] of Object.entries(values || {})) {
    const el = fieldEl(part, name);
    if (el && typeof value === "string") el.value = value;
  }
}

const saveDraft = debounce(() => store.set({resume: readPart("resume", RESUME_FIELDS), job: readPart("job", JOB_FIELDS)}), 300);

function summarizeResume() {
  const resume = readPart("resume", RESUME_FIELDS);
  const filled = RESUME_FIELDS.filter((name) => resume[name]).length;
  $("resume-summary").textContent = resume.name
    ? `${resume.name} · ${filled} of ${RESUME_FIELDS.length} fields (saved in this browser)`
    : "(saved in this browser)";
}

// fn runs ms after the last call; .flush() runs a pending call now (before a letter is written, or the page goes).
function debounce(fn, ms) {
  let timer = null;
  const run = (...args) => { clearTimeout(timer); timer = setTimeout(() => { timer = null; fn(...args); }, ms); };
  run.flush = () => {
    if (timer === null) return undefined;
    clearTimeout(timer);
    timer = null;
    return fn();
  };
  return run;
}

// ---------------------------------------------------------------- messages

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(text, state) {
  const el = $("service-status");
  el.textContent = text;
  el.title = text; // the header may cut it short
  el.className = `status ${state || ""}`;
}

async function errorMessage(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (response.status === 401) return "The service wants a token: set it in " + (IS_EXTENSION ? "Options." : "Settings.");
  if (response.status === 403) return "The service refused this page's origin (see its --allowed_origins).";
  if (response.status === 413) return "Too much text: shorten the posting or the resume.";
  if (body && body.message) return body.message;
  if (body && typeof body.detail === "string") return body.detail;
  return `The service answered ${response.status} ${response.statusText}.`;
}

function unreachable(serviceUrl) {
  return `No service at ${serviceUrl}. Start it with: python serve.py` +
    (IS_EXTENSION ? " (or change the URL in Options)." : ".");
}

// ---------------------------------------------------------------- the service

async function checkService() {
  const {serviceUrl, token} = await settings();
  try {
    const headers = token ? {Authorization: `Bearer ${token}`} : {};
    const response = await fetch(`${serviceUrl}/healthz`, {cache: "no-store", headers});
    if (!response.ok) throw new Error(String(response.status));
    const health = await response.json();
    limits = Object.assign(limits, health.limits || {});
    applyLimits();
    untuned = health.fine_tuned === false;
    $("model-kind").hidden = !untuned;
    $("model-kind").title = untuned ? "Not fine-tuned for letters: start the service with --run runs/NAME for a trained model" : "";
    if (health.token_required && !health.token_ok) {
      setStatus("token needed", "down");
      if (!IS_EXTENSION) $("page-settings").open = true;
      showError("The service wants a token: set it in " + (IS_EXTENSION ? "Options." : "Settings."));
    } else {
      setStatus(`model: ${health.model}`, "ok");
    }
  } catch (e) {
    setStatus("service not reachable", "down");
    showError(unreachable(serviceUrl));
  }
}

function applyLimits() {
  for (const [part, names] of [["job", JOB_FIELDS], ["resume", RESUME_FIELDS]]) {
    for (const name of names) {
      const max = limits[LIMIT_OF[name] || "max_field_chars"];
      if (max) fieldEl(part, name).maxLength = max;
    }
  }
}

function parseEvents(buffer, onEvent) {
  // Server-sent events, separated by a blank line; returns what is left of an unfinished event.
  const chunks = buffer.split(/\r?\n\r?\n/);
  const rest = chunks.pop();
  for (const chunk of chunks) {
    let event = "message";
    const data = [];
    for (const line of chunk.split(/\r?\n/)) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length) onEvent(event, JSON.parse(data.join("\n")));
  }
  return rest;
}

// Required fields are marked only after a submit was tried; returns whether the form can be sent.
function checkRequired(job, resume) {
  $("letter-form").classList.add("submitted");
  const missing = [["job", "title", job.title], ["job", "company", job.company], ["resume", "name", resume.name]]
    .filter(([, , value]) => !value);
  document.querySelectorAll(".missing").forEach((el) => el.classList.remove("missing"));
  if (!missing.length) return true;
  missing.forEach(([part, name]) => fieldEl(part, name).classList.add("missing"));
  if (missing.some(([part]) => part === "resume")) $("resume-box").open = true;
  fieldEl(missing[0][0], missing[0][1]).focus();
  showError("Fill in the job title, the company and your name.");
  return false;
}

function ordinal(n) {
  return n === 1 ? "next" : `${n}${n === 2 ? "nd" : n === 3 ? "rd" : "th"}`;
}

// The stream's events as they come: the place in line, the letter as it grows; returns the `done` answer.
async function readStream(response, started) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let done = null;
  for (;;) {
    const {value, done: finished} = await reader.read();
    if (finished) break;
    buffer = parseEvents(buffer + decoder.decode(value, {stream: true}), (name, data) => {
      if (name === "queued") {
        $("progress").textContent = data.position === 1 ? "waiting: next in line" : `waiting: ${ordinal(data.position)} in line`;
      } else if (name === "start") {
        const what = data.decoding === "grounded" ? "writing candidates, keeping the best-grounded" : "writing";
        $("progress").textContent = data.batch_size > 1 ? `${what} (with ${data.batch_size - 1} other letters)…` : `${what}…`;
      } else if (name === "token") {
        CoverloraLetter.append($("letter"), data.text);
        $("progress").textContent = `writing… ${((performance.now() - started) / 1000).toFixed(0)} s`;
      } else if (name === "done") {
        done = data;
      } else if (name === "error") {
        throw new Error(data.detail || "generation failed");
      }
    });
  }
  if (!done) throw new Error("The service closed the stream before the letter was done.");
  return done;
}

async function writeLetter(event) {
  event.preventDefault();
  showError("");
  const job = readPart("job", JOB_FIELDS);
  const resume = readPart("resume", RESUME_FIELDS);
  if (!checkRequired(job, resume)) return;
  await saveDraft.flush(); // the resume typed just now is kept even if the letter comes back within the debounce
  const {serviceUrl, token} = await settings();
  const headers = {"Content-Type": "application/json", "Accept": "text/event-stream"};
  if (token) headers.Authorization = `Bearer ${token}`;
  running = new AbortController();
  setBusy(true);
  $("result").hidden = false;
  $("letter").replaceChildren();
  $("warnings").replaceChildren();
  $("grounding-banner").hidden = true;
  $("meta").textContent = "";
  $("resume-box").open = false;
  $("result").scrollIntoView({block: "start"});
  if (MODE === "popup") $("progress").textContent = "keep this popup open (or use the side panel)";
  const started = performance.now();
  try {
    let response;
    try {
      response = await fetch(`${serviceUrl}/v1/letters/stream`, {
        method: "POST", headers, body: JSON.stringify({job, resume}), signal: running.signal});
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Error(unreachable(serviceUrl));
    }
    if (!response.ok) throw new Error(await errorMessage(response));
    showResult(await readStream(response, started));
  } catch (e) {
    if (e.name === "AbortError") $("progress").textContent = "stopped";
    else showError(e.message || String(e));
  } finally {
    running = null;
    setBusy(false);
  }
}

// A finished letter: the sentence view (with claim labels when the service sends them), the banner, the
// warnings, and the untuned model's label.
function showResult(result) {
  const flagged = CoverloraLetter.render($("letter"), result.letter, result.claims);
  CoverloraLetter.banner($("grounding-banner"), result, flagged);
  $("grounding-banner").hidden = false;
  const kind = result.fine_tuned === false ? "untuned base model" : "fine-tuned";
  const repair = result.repair;
  const chosen = result.choice ? ` · best-grounded of ${result.choice.candidates} candidates`
    : repair ? ` · repaired: ${repair.rewritten} sentence${repair.rewritten === 1 ? "" : "s"} rewritten, ${repair.left_out} left out`
    : "";
  $("meta").textContent = `${result.new_tokens} tokens in ${result.seconds.toFixed(1)} s · ${result.model} · ${kind}${chosen}`;
  $("progress").textContent = "";
  const items = result.warnings.map((warning) => [warning.code, warning.message]);
  if (result.fine_tuned === false) {
    items.push(["untuned", "Written by an untuned base model, not a fine-tuned one: a demo of the service. "
                          + "Start it with python serve.py --run runs/NAME for a trained model."]);
  }
  $("warnings").replaceChildren(...items.map(([code, message]) => {
    const item = document.createElement("li");
    item.dataset.code = code;
    item.textContent = message;
    return item;
  }));
  $("copy").hidden = false;
  store.set({lastResult: result});
}

function setBusy(busy) {
  $("write").disabled = busy;
  $("write").textContent = busy ? "Writing…" : "Write letter";
  $("cancel").hidden = !busy;
  if (busy) $("copy").hidden = true;
  if (!busy && /^(writing|waiting|keep)/.test($("progress").textContent)) $("progress").textContent = "";
}

// ---------------------------------------------------------------- the current tab (extension only)

async function usePage() {
  showError("");
  try {
    const [tab] = await chrome.tabs.query({active: true, currentWindow: true});
    if (!tab || tab.id === undefined) throw new Error("No active tab.");
    const [injection] = await chrome.scripting.executeScript({target: {tabId: tab.id},
                                                              func: CoverloraHeuristics.pageInfo});
    const guess = CoverloraHeuristics.guessJob(injection && injection.result, limits.max_posting_chars);
    if (guess.title) fieldEl("job", "title").value = guess.title;
    if (guess.company) fieldEl("job", "company").value = guess.company;
    fieldEl("job", "posting").value = guess.posting;
    $("progress").textContent = guess.fromSelection ? "posting: the selected text" : "posting: the page's main text";
    saveDraft();
  } catch (e) {
    showError(`Cannot read this page (${e.message || e}). Select the posting's text and paste it instead.`);
  }
}

// The side panel stays open while the user browses, so a letter written there survives (the popup's does not).
async function openSidePanel() {
  try {
    const win = await chrome.windows.getCurrent();
    await chrome.sidePanel.open({windowId: win.id});
    window.close();
  } catch (e) {
    showError(`Cannot open the side panel here (${e.message || e}); Chrome 116 or later has it.`);
  }
}

// ---------------------------------------------------------------- start

async function start() {
  document.body.dataset.mode = MODE;
  const saved = await store.get(["resume", "job", "lastResult", "pageToken"]);
  fillPart("resume", saved.resume);
  fillPart("job", saved.job);
  summarizeResume();
  if (!IS_EXTENSION && saved.pageToken) $("page-token").value = saved.pageToken;
  if (saved.resume && saved.resume.name) $("resume-box").open = false;
  if (saved.lastResult && saved.lastResult.letter) {
    $("result").hidden = false;
    showResult(saved.lastResult);
  }
  document.querySelectorAll("#letter-form input:not(#page-token), #letter-form textarea")
    .forEach((el) => el.addEventListener("input", () => { el.classList.remove("missing"); saveDraft(); }));
  document.querySelectorAll("#resume-box input, #resume-box textarea")
    .forEach((el) => el.addEventListener("change", summarizeResume));
  $("page-token").addEventListener("change", async () => {
    await store.set({pageToken: $("page-token").value.trim()});
    showError("");
    await checkService();
  });
  $("letter-form").addEventListener("submit", writeLetter);
  window.addEventListener("pagehide", () => saveDraft.flush());
  $("cancel").addEventListener("click", () => running && running.abort());
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(CoverloraLetter.text($("letter")));
      $("progress").textContent = "copied";
    } catch (e) {
      window.getSelection().selectAllChildren($("letter"));
      document.execCommand("copy");
    }
  });
  if (IS_EXTENSION) {
    $("use-page").addEventListener("click", usePage);
    $("open-options").addEventListener("click", (e) => { e.preventDefault(); chrome.runtime.openOptionsPage(); });
    $("open-panel").addEventListener("click", openSidePanel);
  }
  await checkService();
}

start();
