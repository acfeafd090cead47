// The executions table: path, parameters, status, started, duration, output link, and the
// view / shut down / delete buttons (the destructive ones ask first).

import {
  confirmAction,
  formatDuration,
  formatTime,
  h,
  isRunning,
  labURL,
  showError,
  statusBadge,
} from "./ui.js";

function paramsText(params) {
  const entries = Object.entries(params || {});
  if (!entries.length) return "";
  return entries
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(", ");
}

export class ExecutionsTable {
  /** onView(model) opens a model's live view; onServerGone() when the server stopped. */
  constructor(api, onView, onServerGone) {
    this.api = api;
    this.onView = onView;
    this.onServerGone = onServerGone;
    this.serverURL = null;
    this.models = [];
    this.body = document.getElementById("nbexec-executions-body");
    document.getElementById("nbexec-refresh").addEventListener("click", () => this.refresh());
  }

  /** Reload the list; resolves to the models (empty on error, which is shown). */
  async refresh() {
    let answer;
    try {
      answer = await this.api.executions();
    } catch (err) {
      if (err.status === 409 && this.onServerGone) {
        // the server stopped meanwhile: say so in the server card, not as an error
        this.clear("The server is not running.");
        this.onServerGone();
      } else {
        this.clear("Could not list the executions.");
        showError(err, "Listing executions");
      }
      return [];
    }
    this.models = (answer && answer.executions) || [];
    this.models.sort((a, b) => (b.started_at || Infinity) - (a.started_at || Infinity));
    this.render();
    return this.models;
  }

  clear(text) {
    this.models = [];
    this.body.replaceChildren(
      h("tr", { class: "nbexec-placeholder" }, h("td", { colspan: "7", class: "text-body-secondary" }, text)),
    );
  }

  render() {
    if (!this.models.length) {
      this.clear("No executions yet.");
      return;
    }
    this.body.replaceChildren(...this.models.map((model) => this.row(model)));
  }

  row(model) {
    const running = isRunning(model.status);
    const end = model.completed_at || (running ? Date.now() / 1000 : null);
    const duration = model.started_at && end ? formatDuration(end - model.started_at) : "";
    const href = labURL(this.serverURL, model.output_path);
    const output = href && !running
      ? h("a", { href, target: "_blank", rel: "noopener", class: "nbexec-output-link text-break" }, model.output_path)
      : h("span", { class: "text-break text-body-secondary" }, model.output_path || "");
    const badge = statusBadge(model.status);
    badge.title = model.status;
    const status = h("div", {}, badge, model.progress ? h("span", { class: "small ms-1" }, model.progress) : null);
    if (model.status && model.status.startsWith("error")) {
      status.append(h("div", { class: "small text-danger text-break nbexec-status-text" }, model.status));
    }
    const actions = h(
      "div",
      { class: "d-flex flex-wrap gap-1 justify-content-end" },
      h("button", {
        type: "button",
        class: "btn btn-sm btn-outline-primary nbexec-view",
        onclick: () => this.onView(model),
      }, "View"),
      running
        ? h("button", {
            type: "button",
            class: "btn btn-sm btn-outline-danger nbexec-shutdown",
            onclick: () => this.shutdown(model),
          }, "Shut down")
        : null,
      h("button", {
        type: "button",
        class: "btn btn-sm btn-danger nbexec-delete",
        onclick: () => this.remove(model),
      }, "Delete"),
    );
    return h(
      "tr",
      { class: "nbexec-execution", dataset: { execId: model.exec_id } },
      h("td", { class: "text-break" }, model.path),
      h("td", { class: "text-break small" }, paramsText(model.params)),
      h("td", {}, status),
      h("td", { class: "small" }, formatTime(model.started_at)),
      h("td", { class: "small text-nowrap" }, duration),
      h("td", { class: "small" }, output),
      h("td", {}, actions),
    );
  }

  async shutdown(model) {
    const ok = await confirmAction(`Shut down the execution of ${model.path}? Its kernel is stopped; the output so far is written.`, "Shut down");
    if (!ok) return;
    try {
      await this.api.shutdown(model.exec_id);
    } catch (err) {
      showError(err, `Shutting down ${model.path}`);
    }
    await this.refresh();
  }

  async remove(model) {
    const ok = await confirmAction(`Delete the execution of ${model.path} from the list? The output notebook stays.`, "Delete");
    if (!ok) return;
    try {
      await this.api.remove(model.exec_id);
    } catch (err) {
      showError(err, `Deleting ${model.path}`);
    }
    await this.refresh();
  }
}
