"use strict";
// API keys (web/auth.py): where the server answers 401 key_required or bad_key, the page asks for a key, keeps it
// in sessionStorage (this tab only: gone when the tab closes, never in a cookie or on disk) and retries. Images
// then come through fetch() with the key, as blob: URLs, since an <img> cannot send an Authorization header.

const KEY_ITEM = "imgsearch-api-key";
let keyPrompt = null;  // the promise of the key the user is being asked for, shared by every waiting request

function storedKey() {
  try { return sessionStorage.getItem(KEY_ITEM); } catch (e) { return null; }
}

function withKey(init) {
  const key = storedKey();
  if (!key) return init || {};
  const headers = new Headers((init && init.headers) || {});
  headers.set("Authorization", `Bearer ${key}`);
  return { ...(init || {}), headers };
}

function askForKey(message) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    const form = document.getElementById("key-form");
    const input = document.getElementById("key-input");
    document.getElementById("key-message").textContent = message;
    form.hidden = false;
    input.value = "";
    input.focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_ITEM, key);
      form.hidden = true;
      keyPrompt = null;
      resolve();
    };
  });
  return keyPrompt;
}

// fetch() for the API: the tab's key sent, and asked for (then the request sent again) when the server needs one
async function apiFetch(url, init) {
  for (;;) {
    const response = await fetch(url, withKey(init));
    if (response.status !== 401) return response;
    const body = await response.clone().json().catch(() => ({}));
    const code = body.error && body.error.code;
    if (code !== "key_required" && code !== "bad_key") return response;
    if (code === "bad_key") sessionStorage.removeItem(KEY_ITEM);
    await askForKey(code === "bad_key" ? "That key was not accepted (mistyped, or revoked): enter another."
                                       : body.error.message);
  }
}

// an API image into <img>: straight from its URL without a key, else fetched with the key as a blob: URL
async function apiImage(img, url) {
  if (!storedKey() || !url || !url.startsWith("/api/")) {
    img.src = url;
    return;
  }
  const response = await apiFetch(url);
  if (!response.ok) return;
  const blobUrl = URL.createObjectURL(await response.blob());
  img.addEventListener("load", () => URL.revokeObjectURL(blobUrl), { once: true });
  img.src = blobUrl;
}
