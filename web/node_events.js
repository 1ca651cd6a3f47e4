// Events from running nodes (nodes/node_events.py): live over ComfyUI's websocket as `<channel>.<kind>`, and the
// kept ones of this tab's client id from GET /echotorrent/events. Generic: the stream player uses channel
// "echotorrent.stream"; a live chart can subscribe to its own channel the same way.
//
// Nothing is lost across a page reload or a websocket reconnect: while the page catches up from the server's log,
// live events are held; the log is fetched only once the server has registered this page's websocket (its first
// `status` message), so every kept event is in the log, or arrives live, or both; the two are merged in `seq` order
// and each event is delivered once. A live event whose stream number (`kept`) skips one (it was sent while the
// socket was reconnecting) is held too, and the page catches up again before delivering it.
import { api } from "../../scripts/api.js";

const FINISHED_EVENTS = { execution_success: "finished", execution_error: "error", execution_interrupted: "interrupted" };
const RECORD_LIMIT = 50;
const FETCH_TRIES = 3; // tries of GET /echotorrent/events per catch-up
const RETRY_MS = 500;
const records = []; // what the subscriptions did: catch-ups and websocket reconnects, for tests and debugging

function record(entry) {
  records.push({ at: performance.now(), ...entry });
  if (records.length > RECORD_LIMIT) records.shift();
}

// The last catch-ups ({channel, reason, kept, held, error}) and reconnects, oldest first.
export function subscriptionRecords() {
  return records.map((entry) => ({ ...entry }));
}

export function clientId() {
  return api.clientId ?? api.initialClientId ?? null;
}

// Resolves once the server has registered the websocket now open: a `status` message came over it (the server
// sends one to every socket it registers, before anything else).
function socketRegistration() {
  let registered = Boolean(api.clientId) && api.socket?.readyState === WebSocket.OPEN; // loaded after connecting
  let waiting = [];
  api.addEventListener("reconnecting", () => {
    registered = false;
    record({ event: "reconnecting" });
  });
  api.addEventListener("status", (event) => {
    if (event.detail === null || api.socket?.readyState !== WebSocket.OPEN) return; // the socket closed
    registered = true;
    for (const resolve of waiting.splice(0)) resolve();
  });
  return () => (registered ? Promise.resolve() : new Promise((resolve) => waiting.push(resolve)));
}

const registered = socketRegistration();

// handler(kind, message, source) for every event of `channel` with one of `kinds`, each delivered once and each
// stream's in order, with source "live" (websocket) or "kept" (from the server's log).
// afterCatchUp() runs after each catch-up (the first starts at once, others after a reconnect or a missed event).
// Returns { catchUp }: fetches the log again and delivers what is new.
export function subscribeNodeEvents(channel, kinds, handler, afterCatchUp = () => {}) {
  const lastSeq = new Map(); // stream -> seq of its last event delivered (a stream's events come in seq order)
  const nextKept = new Map(); // stream -> the `kept` number its next event must have
  let held = []; // live messages waiting for a catch-up
  let catching = null; // the catch-up under way
  let again = false; // another catch-up was asked for while one was under way

  const streamOf = (message) => `${message.prompt_id}:${message.node}`;

  const deliver = (message, source) => {
    const stream = streamOf(message);
    if (message.seq <= (lastSeq.get(stream) ?? 0)) return; // delivered already
    lastSeq.set(stream, message.seq);
    if (Number.isInteger(message.kept)) nextKept.set(stream, message.kept + 1);
    if (!kinds.includes(message.kind)) return;
    try {
      handler(message.kind, message, source);
    } catch (error) {
      console.error(`[echotorrent] ${channel}.${message.kind} handler failed:`, error);
    }
  };

  // A kept live event that does not follow the last one of its stream (or a stream met without its header).
  const missesOne = (message) => Number.isInteger(message.kept) && message.kept > (nextKept.get(streamOf(message)) ?? 0);

  const onLive = (message) => {
    if (!message || typeof message !== "object") return;
    if (catching) {
      held.push(message);
    } else if (missesOne(message)) {
      held.push(message);
      catchUp(`${message.kind} ${message.kept} of ${streamOf(message)} after ${nextKept.get(streamOf(message))}`);
    } else {
      deliver(message, "live");
    }
  };
  for (const kind of kinds) api.addEventListener(`${channel}.${kind}`, (event) => onLive(event.detail));

  async function fetchKept() {
    const query = new URLSearchParams({ clientId: clientId() ?? "", channel });
    const response = await api.fetchApi(`/echotorrent/events?${query}`);
    if (!response.ok) throw new Error(`GET /echotorrent/events: HTTP ${response.status}`);
    const { streams } = await response.json();
    return streams.flatMap((stream) => [stream.header, ...stream.events]);
  }

  async function catchUpOnce(reason) {
    await registered();
    let kept = [];
    const entry = { event: "catch-up", channel, reason, kept: 0, held: 0, error: null };
    for (let tries = 1; ; tries++) {
      try {
        kept = await fetchKept();
        break;
      } catch (error) {
        entry.error = `try ${tries}: ${error}`;
        if (tries === FETCH_TRIES) {
          console.error("[echotorrent] could not fetch the kept events:", error);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
    Object.assign(entry, { kept: kept.length, held: held.length });
    record(entry);
    const merged = [...kept.map((message) => [message, "kept"]), ...held.map((message) => [message, "live"])];
    held = [];
    merged.sort(([a], [b]) => a.seq - b.seq); // stable: a kept copy comes before its live twin
    for (const [message, source] of merged) deliver(message, source);
  }

  function catchUp(reason = "asked") {
    if (catching) {
      again = true;
      return catching;
    }
    catching = (async () => {
      let why = reason;
      do {
        again = false;
        await catchUpOnce(why);
        why = "asked again meanwhile";
      } while (again);
    })().finally(() => (catching = null));
    return catching.then(afterCatchUp).catch((error) => console.error("[echotorrent] after catching up:", error));
  }

  api.addEventListener("reconnected", () => catchUp("reconnected"));
  catchUp("page load");
  return { catchUp };
}

// handler(promptId, status) when ComfyUI ends a prompt: "finished", "error" or "interrupted".
export function onPromptFinished(handler) {
  for (const [event, status] of Object.entries(FINISHED_EVENTS)) {
    api.addEventListener(event, (e) => {
      if (e.detail?.prompt_id) handler(e.detail.prompt_id, status);
    });
  }
}

// The prompt ids ComfyUI is running or has queued.
export async function activePromptIds() {
  const response = await api.fetchApi("/queue");
  if (!response.ok) throw new Error(`GET /queue: HTTP ${response.status}`);
  const queue = await response.json();
  return new Set([...queue.queue_running, ...queue.queue_pending].map((item) => item[1]));
}
