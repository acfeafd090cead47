// Talking to the nbexec service from the page: fetch with the XSRF token, JSON errors,
// the URLs of the service's routes for one user's server, and its JSON event streams.
//
// The wire facts here (EVENTS, the URL shapes of serverPath() and forwardPath()) mirror
// nbexec_hub/protocol.py, the one Python module that spells them: the page has no build
// step, so it keeps its own copy. Change both together.

/** An execution's event names (protocol.py's NOTEBOOK_START, CELL_START, ...). */
export const EVENTS = Object.freeze({
  NOTEBOOK_START: "notebook_start",
  CELL_START: "start",
  CELL_END: "end",
  OUTPUT: "output",
  NOTEBOOK_COMPLETE: "notebook_complete",
  NOTEBOOK_ERROR: "notebook_error",
});

/** An error answered by the service (or the network), with the message to show. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body || {};
  }
}

function cookie(name) {
  for (const chunk of document.cookie.split(";")) {
    const [key, ...rest] = chunk.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

/** Percent-encode each segment of a relative path, keeping the slashes. */
export function encodePath(path) {
  return path.split("/").filter((s) => s !== "").map(encodeSegment).join("/");
}

/**
 * One URL path segment. "." and ".." are refused: browsers resolve them (and their
 * %2e forms) before sending, so an id of ".." from a hostile server would send a button's
 * request to another resource (the service refuses such segments too: 400).
 */
export function encodeSegment(segment) {
  if (segment === "." || segment === "..") {
    throw new Error(`not a valid name: ${JSON.stringify(segment)}`);
  }
  return encodeURIComponent(segment);
}

/**
 * Open a Server-Sent Events stream of JSON messages: `onEvent` gets each decoded event,
 * `onUnreadable` the data of a message that is not JSON. Returns the EventSource.
 */
export function jsonEventSource(url, onEvent, onUnreadable) {
  const source = new EventSource(url);
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (err) {
      onUnreadable(message.data);
      return;
    }
    onEvent(event);
  };
  return source;
}

export class ServiceAPI {
  /** config: the JSON the template renders (service_prefix, target_user, xsrf_token, ...). */
  constructor(config) {
    this.prefix = config.service_prefix;
    this.user = config.target_user;
    this.serverName = config.server_name || "";
    this.xsrf = config.xsrf_token || cookie("_xsrf") || "";
  }

  /** The service path of the target server, e.g. "api/users/alice/server" (server_path). */
  serverPath() {
    const user = encodeURIComponent(this.user);
    return this.serverName
      ? `api/users/${user}/servers/${encodeURIComponent(this.serverName)}`
      : `api/users/${user}/server`;
  }

  /** The path below which the server's forwarded APIs live ("api/users/alice";
   * executions_root). */
  forwardPath() {
    return this.serverName ? this.serverPath() : `api/users/${encodeURIComponent(this.user)}`;
  }

  url(path, query) {
    const url = new URL(this.prefix + path, window.location.origin);
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, value);
    }
    return url.pathname + url.search;
  }

  /** A request to the service; resolves to the JSON body (or null), rejects with ApiError. */
  async request(method, path, { query, form } = {}) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-XSRFToken": this.xsrf },
    };
    if (form) {
      const body = new URLSearchParams();
      for (const [key, value] of Object.entries(form)) body.append(key, value);
      init.body = body;
    }
    let response;
    try {
      response = await fetch(this.url(path, query), init);
    } catch (err) {
      throw new ApiError(0, `Could not reach the nbexec service (${err.message})`);
    }
    const text = await response.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        body = null;
      }
    }
    if (!response.ok) {
      const detail = body && body.message ? body.message : response.statusText || text;
      throw new ApiError(response.status, `${response.status}: ${detail}`, body);
    }
    return body;
  }

  serverStatus() {
    return this.request("GET", this.serverPath());
  }

  startServer() {
    return this.request("POST", this.serverPath());
  }

  serverProgressURL() {
    return this.url(this.serverPath() + "/progress", { _xsrf: this.xsrf });
  }

  contents(path) {
    const tail = encodePath(path);
    return this.request("GET", `${this.forwardPath()}/contents/${tail}`, { query: { content: 1 } });
  }

  kernelspecs() {
    return this.request("GET", `${this.forwardPath()}/kernelspecs`);
  }

  parameters(notebook) {
    return this.request("GET", `${this.forwardPath()}/executions/parameters`, {
      query: { notebook },
    });
  }

  executions() {
    return this.request("GET", `${this.forwardPath()}/executions`);
  }

  execution(execId) {
    return this.request("GET", `${this.forwardPath()}/executions/${encodeSegment(execId)}`);
  }

  run(form) {
    return this.request("POST", `${this.forwardPath()}/executions`, { form });
  }

  shutdown(execId) {
    return this.request("POST", `${this.forwardPath()}/executions/${encodeSegment(execId)}`, {
      form: { action: "shutdown" },
    });
  }

  remove(execId) {
    return this.request("DELETE", `${this.forwardPath()}/executions/${encodeSegment(execId)}`);
  }

  progressURL(execId) {
    return this.url(`${this.forwardPath()}/executions/${encodeSegment(execId)}/progress`, {
      _xsrf: this.xsrf,
    });
  }
}
