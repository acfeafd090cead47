// The run form: a file browser over the server's contents (folders and .ipynb files only),
// the chosen notebook's declared parameters as typed inputs, and the execution options.

import { h, showError } from "./ui.js";

/** The value a parameter's default source text shows in its input ('x' -> x). */
export function defaultValue(param) {
  const source = (param.default || "").trim();
  if (param.type === "str") {
    const match = source.match(/^[rRuUbB]?(['"])([\s\S]*)\1$/);
    if (match && !match[2].includes("\\")) return match[2];
    return source;
  }
  if (param.type === "bool") return source === "True" ? "true" : "false";
  return source;
}

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

function paramInput(param) {
  const id = `nbexec-param-${param.name}`;
  const value = defaultValue(param);
  let input;
  if (param.type === "bool") {
    input = h(
      "select",
      { class: "form-select", id, name: param.name },
      h("option", { value: "true", selected: value === "true" }, "True"),
      h("option", { value: "false", selected: value === "false" }, "False"),
    );
  } else if ((param.type === "int" || param.type === "float") && NUMBER.test(value)) {
    input = h("input", {
      class: "form-control",
      id,
      name: param.name,
      type: "number",
      step: param.type === "int" ? "1" : "any",
      value,
    });
  } else {
    input = h("input", { class: "form-control", id, name: param.name, type: "text", value });
  }
  // what the browser shows for the default, so that an untouched field is left out
  input.dataset.default = input.value;
  const helpId = `${id}-help`;
  const help = [param.type ? `${param.type}` : "untyped", `default ${param.default}`];
  if (param.help) help.push(param.help);
  input.setAttribute("aria-describedby", helpId);
  return h(
    "div",
    { class: "mb-2 nbexec-param" },
    h("label", { class: "form-label", for: id }, param.name),
    input,
    h("div", { class: "form-text", id: helpId }, help.join(" · ")),
  );
}

export class RunForm {
  /** onStarted(execution) is called with the model of each execution the form starts. */
  constructor(api, onStarted) {
    this.api = api;
    this.onStarted = onStarted;
    this.cwd = "";
    this.notebook = null;
    this.disabledNote = document.getElementById("nbexec-run-disabled");
    this.browser = document.getElementById("nbexec-browser");
    this.breadcrumb = document.getElementById("nbexec-breadcrumb");
    this.files = document.getElementById("nbexec-files");
    this.form = document.getElementById("nbexec-run-form");
    this.notebookInput = document.getElementById("nbexec-notebook");
    this.paramsFields = document.getElementById("nbexec-params-fields");
    this.kernel = document.getElementById("nbexec-kernel");
    this.submit = document.getElementById("nbexec-run-submit");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
  }

  /** The server is ready: show the browser and load the kernels. */
  async enable() {
    this.disabledNote.classList.add("d-none");
    this.browser.classList.remove("d-none");
    await Promise.all([this.browse(this.cwd), this.loadKernels()]);
  }

  disable() {
    this.disabledNote.classList.remove("d-none");
    this.browser.classList.add("d-none");
    this.form.classList.add("d-none");
  }

  async loadKernels() {
    let answer;
    try {
      answer = await this.api.kernelspecs();
    } catch (err) {
      showError(err, "Listing kernels");
      return;
    }
    const current = this.kernel.value;
    this.kernel.replaceChildren(h("option", { value: "" }, "The notebook's own kernel"));
    const specs = Object.values((answer && answer.kernelspecs) || {});
    specs.sort((a, b) => a.name.localeCompare(b.name));
    for (const spec of specs) {
      const label = (spec.spec && spec.spec.display_name) || spec.name;
      this.kernel.append(h("option", { value: spec.name }, `${label} (${spec.name})`));
    }
    this.kernel.value = current;
  }

  async browse(path) {
    let model;
    try {
      model = await this.api.contents(path);
    } catch (err) {
      showError(err, `Listing ${path || "the home folder"}`);
      return;
    }
    this.cwd = model.path || "";
    this.renderBreadcrumb();
    const entries = (model.content || []).filter(
      (item) => item.type === "directory" || item.name.endsWith(".ipynb"),
    );
    entries.sort((a, b) =>
      a.type === b.type ? a.name.localeCompare(b.name) : a.type === "directory" ? -1 : 1,
    );
    const items = entries.map((item) => {
      const isDir = item.type === "directory";
      const button = h(
        "button",
        {
          type: "button",
          class: "list-group-item list-group-item-action nbexec-file",
          dataset: { path: item.path, kind: isDir ? "directory" : "notebook" },
          "aria-current": !isDir && item.path === this.notebook ? "true" : null,
          onclick: () => (isDir ? this.browse(item.path) : this.choose(item.path)),
        },
        h("i", { class: `fa ${isDir ? "fa-folder" : "fa-book"} me-2`, "aria-hidden": "true" }),
        item.name + (isDir ? "/" : ""),
      );
      return h("li", { class: "p-0 list-group-item border-0" }, button);
    });
    if (!items.length) {
      items.push(h("li", { class: "list-group-item text-body-secondary" }, "No notebooks here."));
    }
    this.files.replaceChildren(...items);
  }

  renderBreadcrumb() {
    const parts = this.cwd ? this.cwd.split("/") : [];
    const crumbs = [{ name: "Home", path: "" }];
    parts.forEach((name, i) => crumbs.push({ name, path: parts.slice(0, i + 1).join("/") }));
    this.breadcrumb.replaceChildren(
      ...crumbs.map((crumb, i) => {
        const last = i === crumbs.length - 1;
        const content = last
          ? crumb.name
          : h("a", {
              href: "#",
              onclick: (event) => {
                event.preventDefault();
                this.browse(crumb.path);
              },
            }, crumb.name);
        return h(
          "li",
          { class: `breadcrumb-item${last ? " active" : ""}`, "aria-current": last ? "page" : null },
          content,
        );
      }),
    );
  }

  async choose(path) {
    this.notebook = path;
    for (const button of this.files.querySelectorAll(".nbexec-file")) {
      button.toggleAttribute("aria-current", button.dataset.path === path);
      button.classList.toggle("active", button.dataset.path === path);
    }
    this.notebookInput.value = path;
    this.paramsFields.replaceChildren(h("p", { class: "text-body-secondary" }, "Reading parameters…"));
    this.form.classList.remove("d-none");
    let answer;
    try {
      answer = await this.api.parameters(path);
    } catch (err) {
      this.paramsFields.replaceChildren();
      showError(err, `Parameters of ${path}`);
      return;
    }
    if (this.notebook !== path) return;
    const params = (answer && answer.parameters) || [];
    this.paramsFields.replaceChildren(
      ...(params.length
        ? params.map(paramInput)
        : [h("p", { class: "text-body-secondary mb-0 nbexec-no-params" }, "This notebook declares no parameters.")]),
    );
  }

  /** The form's fields as the Execution API's form body; unchanged parameters are left out. */
  body() {
    const form = { notebook: this.notebook };
    for (const input of this.paramsFields.querySelectorAll("input, select")) {
      if (input.value !== input.dataset.default) form[input.name] = input.value;
    }
    const data = new FormData(this.form);
    for (const key of ["jupyter_kernel", "output_path", "cell_timeout"]) {
      const value = (data.get(key) || "").trim();
      if (value) form[key] = value;
    }
    if (data.get("overwrite")) form.overwrite = "true";
    return form;
  }

  async run() {
    if (!this.notebook) return;
    this.submit.disabled = true;
    try {
      const event = await this.api.run(this.body());
      if (event && event.execution && this.onStarted) this.onStarted(event.execution);
    } catch (err) {
      showError(err, `Running ${this.notebook}`);
    } finally {
      this.submit.disabled = false;
    }
  }
}
