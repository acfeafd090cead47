// The server card: stopped / starting (the hub's spawn progress over EventSource) / ready,
// with a start button and a link to open the server. The service's page draws it from the
// service's API; the hub's home page (templates/home.html, through home.js) from the hub's.

import { jsonEventSource } from "./api.js";
import { showError } from "./ui.js";

const BADGES = {
  ready: ["text-bg-success", "ready"],
  starting: ["text-bg-warning", "starting"],
  stopping: ["text-bg-warning", "stopping"],
  stopped: ["text-bg-secondary", "stopped"],
  unknown: ["text-bg-danger", "unknown"],
};

/** The service page's messages; each gets the status model (or the error, for unknown). */
const TEXTS = {
  ready: (status) => `Running at ${status.url}.`,
  starting: () => "The server is starting.",
  stopping: () => "The server is stopping.",
  busy: (status) => `The server is busy: ${status.pending}.`,
  stopped: () => "The server is not running. Start it to run notebooks.",
  unknown: () => "Could not get the server's status.",
};

export class ServerCard {
  /**
   * api: serverStatus(), startServer() and serverProgressURL(), answering the service's
   * status model (CONTRACT B.3). onReady(status) is called whenever the server is (again)
   * found ready. Options: `prefix` of the elements' ids (`<prefix>-state`, `-message`,
   * `-progress`, and the optional `-start` and `-open`), `root` (an element that gets the
   * shown state as data-state), `texts` (overrides of TEXTS), `onStatus(status)` after each
   * status shown, `onError(error, context)` (showError by default).
   */
  constructor(api, onReady, options = {}) {
    const { prefix = "nbexec-server", root = null, texts = {}, onStatus = null } = options;
    this.api = api;
    this.onReady = onReady;
    this.onStatus = onStatus;
    this.onError = options.onError || showError;
    this.texts = { ...TEXTS, ...texts };
    this.root = root;
    this.status = null;
    this.events = null;
    this.badge = document.getElementById(`${prefix}-state`);
    this.message = document.getElementById(`${prefix}-message`);
    this.progress = document.getElementById(`${prefix}-progress`);
    this.bar = this.progress.querySelector(".progress-bar");
    this.startButton = document.getElementById(`${prefix}-start`);
    this.openLink = document.getElementById(`${prefix}-open`);
    if (this.startButton) this.startButton.addEventListener("click", () => this.start());
  }

  async refresh() {
    let status;
    try {
      status = await this.api.serverStatus();
    } catch (err) {
      this.setBadge(BADGES.unknown);
      this.message.textContent = this.texts.unknown(err);
      this.onError(err, "Server status");
      return null;
    }
    this.show(status);
    return status;
  }

  show(status) {
    const wasReady = this.status && this.status.ready;
    this.status = status;
    const state = status.state;
    if (this.startButton) {
      this.startButton.classList.toggle("d-none", state !== "stopped");
      this.startButton.disabled = false;
    }
    if (this.openLink) {
      this.openLink.classList.toggle("d-none", state !== "ready");
      if (status.url) this.openLink.href = status.url;
    }
    if (state === "ready") {
      this.setBadge(BADGES.ready);
      this.progress.classList.add("d-none");
      this.message.textContent = this.texts.ready(status);
      this.closeEvents();
      if (!wasReady && this.onReady) this.onReady(status);
    } else if (state === "pending" && (!status.pending || status.pending === "spawn")) {
      this.setBadge(BADGES.starting);
      this.message.textContent = this.texts.starting(status);
      this.followProgress();
    } else if (state === "pending") {
      // stopping (or another of the hub's actions) has no progress stream: ask again shortly
      const stopping = status.pending === "stop";
      this.setBadge(stopping ? BADGES.stopping : ["text-bg-warning", status.pending]);
      this.message.textContent = (stopping ? this.texts.stopping : this.texts.busy)(status);
      clearTimeout(this.poll);
      this.poll = setTimeout(() => this.refresh(), 2000);
    } else {
      this.setBadge(BADGES[state] || ["text-bg-secondary", state]);
      this.progress.classList.add("d-none");
      this.message.textContent = this.texts.stopped(status);
      this.closeEvents();
    }
    if (this.onStatus) this.onStatus(status);
  }

  setBadge([cls, text]) {
    this.badge.className = `badge ${cls}`;
    this.badge.textContent = text;
    if (this.root) this.root.dataset.state = text;
  }

  setProgress(percent) {
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    this.progress.classList.remove("d-none");
    this.progress.setAttribute("aria-valuenow", String(value));
    this.bar.style.width = `${value}%`;
    this.bar.textContent = `${value}%`;
  }

  async start() {
    this.startButton.disabled = true;
    try {
      const status = await this.api.startServer();
      this.setProgress(0);
      this.show(status);
      if (status.state === "pending") this.followProgress();
    } catch (err) {
      this.startButton.disabled = false;
      this.onError(err, "Starting the server");
    }
  }

  followProgress() {
    if (this.events) return;
    this.setProgress(0);
    this.bar.classList.remove("bg-danger");
    const source = jsonEventSource(
      this.api.serverProgressURL(),
      (event) => {
        if (event.progress !== undefined) this.setProgress(event.progress);
        if (event.message) this.message.textContent = event.message;
        if (event.failed) {
          this.closeEvents();
          this.bar.classList.add("bg-danger");
          this.onError(event.message || "The server failed to start.", "Starting the server");
          this.refresh();
        } else if (event.ready) {
          this.setProgress(100);
          this.closeEvents();
          this.refresh();
        }
      },
      (data) => this.onError(`unreadable event ${data}`, "Server start progress"),
    );
    this.events = source;
    source.onerror = () => {
      // the relay refused, or ended without a final event: ask for the status again
      // (a server no longer pending closes the stream in show())
      if (source.readyState === EventSource.CLOSED) this.closeEvents();
      setTimeout(() => this.refresh(), 1000);
    };
  }

  closeEvents() {
    if (this.events) {
      this.events.close();
      this.events = null;
    }
  }
}
