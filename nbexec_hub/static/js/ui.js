// Small DOM helpers shared by the page's parts: element building, the error area,
// the confirmation dialog and time formatting.

import { encodePath } from "./api.js";

/** Build an element: h("a", {href: "x", class: "btn"}, "text", childNode, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : value);
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Show an error in the page's error area; it stays until dismissed. */
export function showError(error, context) {
  const area = document.getElementById("nbexec-errors");
  const message = error && error.message ? error.message : String(error);
  const text = context ? `${context}: ${message}` : message;
  const alert = h(
    "div",
    { class: "alert alert-danger alert-dismissible nbexec-error", role: "alert" },
    h("span", { class: "nbexec-error-text" }, text),
    h("button", {
      type: "button",
      class: "btn-close",
      "aria-label": "Dismiss",
      onclick: () => alert.remove(),
    }),
  );
  area.append(alert);
  if (window.console) console.error(text, error);
}

/** Ask before something destructive; resolves to true when confirmed. */
export function confirmAction(text, okLabel) {
  const dialog = document.getElementById("nbexec-confirm");
  document.getElementById("nbexec-confirm-text").textContent = text;
  const ok = document.getElementById("nbexec-confirm-ok");
  ok.textContent = okLabel || "OK";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("nbexec-confirm-cancel").focus();
  });
}

/** "1 h 02 min", "3 min 07 s", "4.2 s" */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** A POSIX timestamp as local date and time. */
export function formatTime(timestamp) {
  if (!timestamp) return "";
  return new Date(timestamp * 1000).toLocaleString();
}

/** The part of a status string that names a state: "error: boom" -> "error". */
export function statusKind(status) {
  if (!status) return "unknown";
  if (status.startsWith("error")) return "error";
  return status;
}

export function isRunning(status) {
  return status === "initializing" || status === "executing";
}

const BADGE = {
  initializing: "text-bg-secondary",
  executing: "text-bg-primary",
  completed: "text-bg-success",
  error: "text-bg-danger",
};

export function statusBadge(status) {
  const kind = statusKind(status);
  return h("span", { class: `badge ${BADGE[kind] || "text-bg-secondary"}` }, kind);
}

/** Where the user's JupyterLab shows a file, from the server's URL ("/user/alice/"). */
export function labURL(serverURL, path) {
  if (!serverURL || !path) return null;
  return `${serverURL.replace(/\/?$/, "/")}lab/tree/${encodePath(path)}`;
}
