// The live view of one execution over EventSource: a bar of code cells done/total, the running
// cell's source and its output as it grows, the last output of every finished cell, elapsed
// time and the final state.
// The progress stream replays every event so far, so a reload picks a run up where it is.

import { EVENTS, jsonEventSource } from "./api.js";
import { RunningOutput, renderOutput } from "./outputs.js";
import { formatDuration, h, isRunning, labURL, showError, statusBadge } from "./ui.js";

function source(cell) {
  return cell ? [].concat(cell.source || "").join("") : "";
}

export class LiveView {
  /**
   * execution: a model (at least exec_id and path); serverURL: "/user/alice/" for output links;
   * onFinished(model) is called once when the final event arrives.
   */
  constructor(api, execution, serverURL, onFinished) {
    this.api = api;
    this.execId = execution.exec_id;
    this.model = execution;
    this.serverURL = serverURL;
    this.onFinished = onFinished;
    this.lastSeq = -1;
    this.events = null;
    this.startedAt = execution.started_at || null;
    this.completedAt = execution.completed_at || null;
    this.finished = false;
    this.build();
  }

  build() {
    const titleId = `nbexec-live-title-${this.execId}`;
    this.badge = h("span", { class: "badge text-bg-secondary" }, "connecting");
    this.bar = h("div", { class: "progress-bar", style: "width: 0%" });
    this.progress = h(
      "div",
      {
        class: "progress mb-2",
        role: "progressbar",
        "aria-label": "Cells done",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": "0",
      },
      this.bar,
    );
    this.counter = h("span", { class: "nbexec-live-counter" }, "waiting for the first cell");
    this.elapsed = h("span", { class: "nbexec-live-elapsed ms-auto" });
    this.current = h("pre", { class: "nbexec-source nbexec-live-current" });
    this.output = new RunningOutput();
    this.currentBox = h(
      "div",
      { class: "d-none mb-2" },
      h("div", { class: "small fw-semibold" }, "Running cell"),
      this.current,
      this.output.element,
    );
    this.cells = h("ol", { class: "nbexec-cells list-unstyled mb-0" });
    this.errorBox = h("pre", { class: "alert alert-danger nbexec-live-error d-none mb-2" });
    this.outputLink = h("a", { class: "btn btn-sm btn-outline-primary d-none", target: "_blank", rel: "noopener" }, "Open output");
    this.closeButton = h(
      "button",
      { type: "button", class: "btn-close ms-2", "aria-label": "Stop following", onclick: () => this.remove() },
    );
    this.element = h(
      "article",
      { class: "card mb-3 nbexec-live", dataset: { execId: this.execId }, "aria-labelledby": titleId },
      h(
        "div",
        { class: "card-header d-flex align-items-center gap-2" },
        h("h3", { class: "h6 mb-0 me-auto text-break", id: titleId }, this.model.path || this.execId),
        this.badge,
        this.closeButton,
      ),
      h(
        "div",
        { class: "card-body" },
        this.progress,
        h("div", { class: "d-flex small mb-2" }, this.counter, this.elapsed),
        this.currentBox,
        this.errorBox,
        h("details", { class: "mb-2", open: true }, h("summary", {}, "Finished cells (last output)"), this.cells),
        this.outputLink,
      ),
    );
    this.timer = setInterval(() => this.tick(), 1000);
  }

  /** Open the stream; it replays what happened, then follows. */
  follow() {
    const source = jsonEventSource(
      this.api.progressURL(this.execId),
      (event) => {
        // after a reconnect the stream resumes from Last-Event-ID; never apply an event twice
        if (typeof event.seq === "number") {
          if (event.seq <= this.lastSeq) return;
          this.lastSeq = event.seq;
        }
        this.apply(event);
      },
      (data) => showError(`unreadable event ${data}`, `Following ${this.model.path}`),
    );
    this.events = source;
    source.onerror = () => {
      if (this.finished) return;
      if (source.readyState === EventSource.CLOSED) this.lost();
    };
  }

  /** The stream was refused (404, 409, ...): say why, from the execution's model. */
  async lost() {
    this.close();
    try {
      const answer = await this.api.execution(this.execId);
      this.model = answer.execution;
      this.showModel();
    } catch (err) {
      this.setBadge("unknown");
      showError(err, `Following ${this.model.path || this.execId}`);
    }
  }

  apply(event) {
    if (event.execution) this.model = event.execution;
    if (event.execution && event.execution.started_at) this.startedAt = event.execution.started_at;
    switch (event.event) {
      case EVENTS.NOTEBOOK_START:
        this.setBadge(this.model.status || "initializing");
        break;
      case EVENTS.CELL_START:
        if (!this.startedAt) this.startedAt = event.timestamp;
        this.setBadge("executing");
        this.setProgress(event.progress, false);
        this.current.textContent = source(event.cell);
        this.output.reset();
        this.currentBox.classList.remove("d-none");
        break;
      case EVENTS.OUTPUT:
        this.output.apply(event);
        break;
      case EVENTS.CELL_END:
        this.setProgress(event.progress, true);
        this.addCell(event);
        break;
      case EVENTS.NOTEBOOK_COMPLETE:
      case EVENTS.NOTEBOOK_ERROR:
        this.finish(event);
        break;
      default:
        break;
    }
    this.tick();
  }

  setProgress(progress, done) {
    if (!progress) return;
    const [current, total] = progress.split("/").map(Number);
    const finished = done ? current : current - 1;
    const percent = total ? Math.round((100 * finished) / total) : 0;
    this.bar.style.width = `${percent}%`;
    this.bar.textContent = `${percent}%`;
    this.progress.setAttribute("aria-valuenow", String(percent));
    this.counter.textContent = done
      ? `${current} of ${total} cells done`
      : `cell ${current} of ${total} running`;
  }

  addCell(event) {
    const outputs = (event.cell && event.cell.outputs) || [];
    const last = renderOutput(outputs[outputs.length - 1]);
    const [current] = (event.progress || "").split("/");
    this.cells.append(
      h(
        "li",
        { class: "nbexec-cell" },
        h("div", { class: "small text-body-secondary" }, `Cell ${current}`),
        last || h("div", { class: "small fst-italic text-body-secondary" }, "no output"),
      ),
    );
  }

  finish(event) {
    this.finished = true;
    this.close();
    this.currentBox.classList.add("d-none");
    this.output.reset(); // each cell's outputs are in the output notebook now
    if (this.model.completed_at) this.completedAt = this.model.completed_at;
    else this.completedAt = event.timestamp;
    if (event.event === EVENTS.NOTEBOOK_ERROR) {
      const status = this.model.status && this.model.status.startsWith("error") ? this.model.status : "error";
      this.setBadge(status);
      this.bar.classList.add("bg-danger");
      this.errorBox.textContent = event.error || status;
      this.errorBox.classList.remove("d-none");
    } else {
      this.setBadge("completed");
      this.bar.classList.add("bg-success");
      this.bar.style.width = "100%";
      this.bar.textContent = "100%";
      this.progress.setAttribute("aria-valuenow", "100");
    }
    const outputPath = event.output_path || this.model.output_path;
    const href = labURL(this.serverURL, outputPath);
    if (href) {
      this.outputLink.href = href;
      this.outputLink.textContent = `Open ${outputPath}`;
      this.outputLink.classList.remove("d-none");
    }
    this.tick();
    if (this.onFinished) this.onFinished(this.model);
  }

  /** Fill the card from a model alone (the stream could not be had). */
  showModel() {
    const model = this.model;
    this.setBadge(model.status);
    if (model.progress) this.setProgress(model.progress, !isRunning(model.status));
    if (model.status && model.status.startsWith("error")) {
      this.errorBox.textContent = model.status;
      this.errorBox.classList.remove("d-none");
    }
    this.tick();
  }

  setBadge(status) {
    const badge = statusBadge(status);
    badge.title = status;
    this.badge.replaceWith(badge);
    this.badge = badge;
  }

  tick() {
    if (!this.startedAt) return;
    const end = this.completedAt || Date.now() / 1000;
    this.elapsed.textContent = `${this.completedAt ? "took" : "elapsed"} ${formatDuration(end - this.startedAt)}`;
    if (this.completedAt) clearInterval(this.timer);
  }

  close() {
    if (this.events) {
      this.events.close();
      this.events = null;
    }
  }

  remove() {
    this.close();
    clearInterval(this.timer);
    this.element.remove();
    if (this.onRemove) this.onRemove(this);
  }
}
