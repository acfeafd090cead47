// The hub home page's server card (templates/home.html): the state of the user's default
// server, drawn by the service page's ServerCard from the hub's own REST API. The hub loads
// this module from the service's static files (/services/nbexec/static/js/home.js, no login
// needed); it asks only the hub, so it works before the user has ever opened the service.

import { ServerCard } from "./server.js";

// start and stop happen elsewhere too (the hub's own buttons, its API): keep asking
const POLL_MS = 5000;
const POLL_FOLLOWING_MS = 15000;

const TEXTS = {
  ready: (status) => `Your server is running at ${status.url}`,
  starting: () => "Your server is starting.",
  stopping: () => "Your server is stopping.",
  busy: (status) => `Your server is busy: ${status.pending}.`,
  stopped: () => "Your server is not running.",
  unknown: (err) => `Could not ask the hub: ${err.message}`,
};

/** The service's status model (CONTRACT B.3) of the hub's server model (absent: stopped). */
function statusModel(server) {
  if (!server) return { state: "stopped", ready: false, pending: null, url: null };
  const ready = Boolean(server.ready);
  return { state: ready ? "ready" : "pending", ready, pending: server.pending, url: server.url };
}

/** The hub's REST API for the user's default server, answering as the service does. */
class HubServerAPI {
  constructor(jhdata) {
    this.baseUrl = jhdata.base_url;
    this.user = jhdata.user;
    this.xsrf = jhdata.xsrf_token || "";
    this.progressUrl = null;
  }

  // the answer to "is my server running?": the hub's user model, servers[""]
  async serverStatus() {
    const response = await fetch(`${this.baseUrl}api/users/${encodeURIComponent(this.user)}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-XSRFToken": this.xsrf },
    });
    if (!response.ok) throw new Error(`the hub answered ${response.status}`);
    const server = ((await response.json()).servers || {})[""];
    this.progressUrl = server ? server.progress_url : null;
    return statusModel(server);
  }

  /** The hub's spawn progress stream of the server last asked about. */
  serverProgressURL() {
    const url = new URL(this.progressUrl, window.location.origin);
    url.searchParams.set("_xsrf", this.xsrf);
    return url.pathname + url.search;
  }
}

function main() {
  const data = window.jhdata || {};
  const root = document.getElementById("nbexec-home-status");
  if (!data.user || !root) return;
  const renderedActive = root.dataset.renderedActive === "true";
  const card = new ServerCard(new HubServerAPI(data), null, {
    prefix: "nbexec-home",
    root,
    texts: TEXTS,
    // the hub drew its Start/Stop buttons for the state at load time: once the server has
    // settled in the other state, load the page again so that they match
    onStatus: (status) => {
      if (status.state !== "pending" && status.ready !== renderedActive) window.location.reload();
    },
    // the card says what went wrong; the hub's page has no error area of ours
    onError: (error, context) => console.error(context, error),
  });
  const poll = async () => {
    await card.refresh();
    setTimeout(poll, card.events ? POLL_FOLLOWING_MS : POLL_MS);
  };
  poll();
}

main();
