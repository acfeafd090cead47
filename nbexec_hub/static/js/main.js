// The nbexec page: wires the server card, the run form, the live views and the executions
// table together. Configuration comes from the JSON the template renders.

import { ServiceAPI } from "./api.js";
import { ExecutionsTable } from "./executions.js";
import { LiveView } from "./live.js";
import { RunForm } from "./run-form.js";
import { ServerCard } from "./server.js";
import { isRunning, showError } from "./ui.js";

const REFRESH_RUNNING_MS = 3000;
const REFRESH_IDLE_MS = 15000;
// a browser keeps about six HTTP/1.1 connections per host: leave room for the API calls
const MAX_STREAMS = 4;

class Page {
  constructor(config) {
    this.api = new ServiceAPI(config);
    this.live = new Map();
    this.liveList = document.getElementById("nbexec-live-list");
    this.liveEmpty = document.getElementById("nbexec-live-empty");
    this.serverURL = null;
    this.timer = null;
    this.table = new ExecutionsTable(
      this.api,
      (model) => this.view(model),
      () => this.serverGone(),
    );
    this.form = new RunForm(this.api, (model) => {
      this.view(model);
      this.table.refresh();
    });
    this.server = new ServerCard(this.api, (status) => this.serverReady(status));
  }

  async start() {
    const status = await this.server.refresh();
    if (!status || !status.ready) {
      this.form.disable();
      this.table.clear(status ? "The server is not running." : "Server status unknown.");
    }
    document.body.dataset.nbexecLoaded = "true";
  }

  async serverReady(status) {
    this.serverURL = status.url;
    this.table.serverURL = status.url;
    this.form.enable();
    const models = await this.table.refresh();
    // pick up every running execution: the stream replays what already happened
    const running = models.filter((model) => isRunning(model.status));
    for (const model of running.slice(0, MAX_STREAMS)) this.view(model);
    this.schedule();
  }

  async serverGone() {
    clearTimeout(this.timer);
    this.form.disable();
    const status = await this.server.refresh();
    if (status && status.ready) this.serverReady(status);
  }

  /** Follow an execution in a live card (at most one card per execution). */
  view(model) {
    const existing = this.live.get(model.exec_id);
    if (existing) {
      existing.element.scrollIntoView({ block: "nearest" });
      return;
    }
    const streaming = [...this.live.values()].filter((view) => view.events).length;
    if (streaming >= MAX_STREAMS) {
      showError(
        `At most ${MAX_STREAMS} executions can be followed at once: close a live card first.`,
        `Following ${model.path}`,
      );
      return;
    }
    const view = new LiveView(this.api, model, this.serverURL, () => this.table.refresh());
    view.onRemove = () => {
      this.live.delete(model.exec_id);
      this.liveEmpty.classList.toggle("d-none", this.live.size > 0);
    };
    this.live.set(model.exec_id, view);
    this.liveList.prepend(view.element);
    this.liveEmpty.classList.add("d-none");
    view.follow();
  }

  /** Keep the table fresh: often while something runs, rarely otherwise. */
  schedule() {
    clearTimeout(this.timer);
    const running = this.table.models.some((model) => isRunning(model.status));
    this.timer = setTimeout(async () => {
      if (!document.hidden) await this.table.refresh();
      this.schedule();
    }, running ? REFRESH_RUNNING_MS : REFRESH_IDLE_MS);
  }
}

function main() {
  const config = JSON.parse(document.getElementById("nbexec-config").textContent);
  const page = new Page(config);
  window.nbexecPage = page;
  page.start();
}

main();
