// Cell outputs in the page: one output as a DOM node, and the outputs of the running cell as
// they grow from the stream's `output` events (CONTRACT A.5).
// Nothing a kernel produces is ever rendered as HTML here: the page lives on the hub's
// origin, and a user's server is not trusted there. Text stays text; images go through <img>.

import { h } from "./ui.js";

/** Lines of one stream kept on screen; older ones scroll out. */
export const SCROLLBACK_LINES = 1000;
/** Outputs of the running cell kept on screen (a cell showing images in a loop). */
export const MAX_OUTPUTS = 50;

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif"];

function joined(value) {
  return [].concat(value ?? "").join("");
}

/** An output as a DOM node (text, image or error), or null when there is nothing to show. */
export function renderOutput(output) {
  if (!output) return null;
  if (output.output_type === "stream") {
    return h("pre", { class: "nbexec-output" }, joined(output.text));
  }
  if (output.output_type === "error") {
    return h("pre", { class: "nbexec-output nbexec-output-error" }, `${output.ename}: ${output.evalue}`);
  }
  const data = output.data || {};
  for (const mime of IMAGE_TYPES) {
    if (data[mime]) {
      const b64 = joined(data[mime]).replace(/\s/g, "");
      return h("img", { class: "nbexec-output-image", src: `data:${mime};base64,${b64}`, alt: "cell output image" });
    }
  }
  if (data["image/svg+xml"]) {
    return h("img", {
      class: "nbexec-output-image",
      src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(joined(data["image/svg+xml"]))}`,
      alt: "cell output image",
    });
  }
  if (data["text/plain"]) return h("pre", { class: "nbexec-output" }, joined(data["text/plain"]));
  return null;
}

/** Text as a terminal shows it: a carriage return goes back to the start of its line. */
export function overwriteReturns(text) {
  return text.replace(/[^\n]*\r(?=[^\n])/g, "");
}

/** The last `limit` lines of text, and whether some were dropped. */
export function lastLines(text, limit) {
  let cut = text.length;
  // a final newline ends the last line rather than starting another
  let seen = text.endsWith("\n") ? -1 : 0;
  while (cut > 0) {
    const at = text.lastIndexOf("\n", cut - 1);
    if (at < 0) return { text, dropped: false };
    seen += 1;
    if (seen >= limit) return { text: text.slice(at + 1), dropped: true };
    cut = at;
  }
  return { text, dropped: false };
}

/** The outputs of the running cell, from its `output` events, as the notebook will hold them. */
export class RunningOutput {
  constructor() {
    this.element = h("div", { class: "nbexec-running-output", role: "log", "aria-label": "Output of the running cell" });
    this.items = [];
  }

  /** A new cell starts (or the cell ended): nothing shown. */
  reset() {
    this.items = [];
    this.element.replaceChildren();
  }

  /** One `output` event: {output, display_id}. */
  apply(event) {
    const output = event.output || {};
    const displayId = event.display_id || null;
    switch (output.output_type) {
      case "clear_output":
        this.reset();
        break;
      case "stream":
        this.appendText(output.name, joined(output.text));
        break;
      case "update_display_data":
        if (displayId) this.updateDisplays(displayId, output);
        break;
      default:
        // showing an output again under a display id updates the earlier ones too (Jupyter's rule)
        if (displayId) this.updateDisplays(displayId, output);
        this.add({ output, displayId, node: renderOutput(output) });
        break;
    }
  }

  appendText(name, text) {
    let item = this.items[this.items.length - 1];
    if (!item || item.output.output_type !== "stream" || item.output.name !== name) {
      item = { output: { output_type: "stream", name, text: "" }, node: h("pre", { class: "nbexec-output" }) };
      if (name === "stderr") item.node.classList.add("nbexec-output-stderr");
      this.add(item);
    }
    const node = item.node;
    const atBottom = node.scrollTop + node.clientHeight >= node.scrollHeight - 4;
    const kept = lastLines(overwriteReturns(item.output.text + text), SCROLLBACK_LINES);
    item.output.text = kept.text;
    item.dropped = item.dropped || kept.dropped;
    node.textContent = kept.text;
    node.classList.toggle("nbexec-output-trimmed", item.dropped);
    node.title = item.dropped ? `only the last ${SCROLLBACK_LINES} lines are shown` : "";
    if (atBottom) node.scrollTop = node.scrollHeight;
  }

  updateDisplays(displayId, output) {
    for (const item of this.items) {
      if (item.displayId !== displayId) continue;
      item.output = { ...item.output, data: output.data, metadata: output.metadata };
      const node = renderOutput(item.output) || h("div");
      item.node.replaceWith(node);
      item.node = node;
    }
  }

  add(item) {
    if (!item.node) item.node = h("div"); // nothing to show, but it keeps its place for updates
    this.items.push(item);
    this.element.append(item.node);
    while (this.items.length > MAX_OUTPUTS) this.items.shift().node.remove();
  }
}
