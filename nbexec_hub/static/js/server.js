// The server card: stopped / starting (the hub's spawn progress, relayed by the service
// over EventSource) / ready, with a start button and a link to open the server.

import { jsonEventSource } from "./api.js";
import { showError } from "./ui.js";

const BADGES = {
  ready: ["text-bg-success", "ready"],
  pending: ["text-bg-warning", "starting"],
  stopped: ["text-bg-secondary", "stopped"],
};

export class ServerCard {
  /** onReady(status) is called whenever the server is (again) found ready. */
  constructor(api, onReady) {
    this.api = api;
    this.onReady = onReady;
    this.status = null;
    this.events = null;
    this.badge = document.getElementById("nbexec-server-state");
    this.message = document.getElementById("nbexec-server-message");
    this.progress = document.getElementById("nbexec-server-progress");
    this.bar = this.progress.querySelector(".progress-bar");
    this.startButton = document.getElementById("nbexec-server-start");
    this.openLink = document.getElementById("nbexec-server-open");
    this.startButton.addEventListener("click", () => this.start());
  }

  async refresh() {
    let status;
    try {
      status = await this.api.serverStatus();
    } catch (err) {
      this.setBadge(["text-bg-danger", "unknown"]);
      this.message.textContent = "Could not get the server's status.";
      showError(err, "Server status");
      return null;
    }
    this.show(status);
    return status;
  }

  show(status) {
    const wasReady = this.status && this.status.ready;
    this.status = status;
    const state = status.state;
    this.setBadge(BADGES[state] || ["text-bg-secondary", state]);
    this.startButton.classList.toggle("d-none", state !== "stopped");
    this.startButton.disabled = false;
    this.openLink.classList.toggle("d-none", state !== "ready");
    if (status.url) this.openLink.href = status.url;
    if (state === "ready") {
      this.progress.classList.add("d-none");
      this.message.textContent = `Running at ${status.url}.`;
      this.closeEvents();
      if (!wasReady && this.onReady) this.onReady(status);
    } else if (state === "pending") {
      this.message.textContent =
        status.pending === "stop" ? "The server is stopping." : "The server is starting.";
      if (status.pending === "stop") {
        // the hub has no progress stream for stopping: ask again shortly
        clearTimeout(this.poll);
        this.poll = setTimeout(() => this.refresh(), 2000);
      } else {
        this.followProgress();
      }
    } else {
      this.progress.classList.add("d-none");
      this.message.textContent = "The server is not running. Start it to run notebooks.";
      this.closeEvents();
    }
  }

  setBadge([cls, text]) {
    this.badge.className = `badge ${cls}`;
    this.badge.textContent = text;
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
      showError(err, "Starting the server");
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
          showError(event.message || "The server failed to start.", "Starting the server");
          this.refresh();
        } else if (event.ready) {
          this.setProgress(100);
          this.closeEvents();
          this.refresh();
        }
      },
      (data) => showError(`unreadable event ${data}`, "Server start progress"),
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
