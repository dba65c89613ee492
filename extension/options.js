// Options: where the local service runs, and its token. Kept in chrome.storage.local (never synced).
"use strict";

const DEFAULT_SERVICE = "http://127.0.0.1:8765";
const $ = (id) => document.getElementById(id);

function normalized(url) {
  const parsed = new URL(url.trim());
  if (parsed.protocol !== "http:" || !["127.0.0.1", "localhost"].includes(parsed.hostname)) {
    throw new Error("use http://127.0.0.1:PORT or http://localhost:PORT: the service runs on this machine");
  }
  return parsed.origin;
}

function say(text, ok) {
  $("result").textContent = text;
  $("result").style.color = ok ? "var(--ok)" : "var(--error)";
}

async function save(event) {
  event.preventDefault();
  try {
    const serviceUrl = normalized($("service-url").value);
    await chrome.storage.local.set({serviceUrl, token: $("token").value.trim()});
    $("service-url").value = serviceUrl;
    say("saved", true);
  } catch (e) {
    say(e.message, false);
  }
}

async function test() {
  try {
    const url = normalized($("service-url").value);
    const headers = $("token").value.trim() ? {Authorization: `Bearer ${$("token").value.trim()}`} : {};
    const response = await fetch(`${url}/healthz`, {headers, cache: "no-store"});
    if (!response.ok) throw new Error(`answered ${response.status}`);
    const health = await response.json();
    if (health.token_required && !health.token_ok) throw new Error("the token is missing or wrong");
    say(`connected: ${health.model}`, true);
  } catch (e) {
    say(e.message.includes("token") ? e.message : `not reachable (${e.message}); is python serve.py running?`, false);
  }
}

async function start() {
  const saved = await chrome.storage.local.get(["serviceUrl", "token"]);
  $("service-url").value = saved.serviceUrl || DEFAULT_SERVICE;
  $("token").value = saved.token || "";
  $("options-form").addEventListener("submit", save);
  $("test").addEventListener("click", test);
}

start();
