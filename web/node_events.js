// Events from running nodes (nodes/node_events.py): live over ComfyUI's websocket as `<channel>.<kind>`, and the
// kept ones of this tab's client id from GET /echotorrent/events after a reload. Generic: the stream player uses
// channel "echotorrent.stream"; a live chart can subscribe to its own channel the same way.
import { api } from "../../scripts/api.js";

const FINISHED_EVENTS = { execution_success: "finished", execution_error: "error", execution_interrupted: "interrupted" };

export function clientId() {
  return api.clientId ?? api.initialClientId ?? null;
}

// handler(kind, message, source) for every event of `channel` with one of `kinds`, each delivered once, with
// source "live" (websocket) or "kept" (fetched by catchUp).
// Returns { catchUp }: fetches the kept events of this tab's client id and delivers those not seen yet.
export function subscribeNodeEvents(channel, kinds, handler) {
  const seen = new Set();
  const deliver = (kind, message, source) => {
    if (!message || typeof message !== "object") return;
    const id = `${message.prompt_id}:${message.node}:${message.seq}`;
    if (seen.has(id)) return;
    seen.add(id);
    try {
      handler(kind, message, source);
    } catch (error) {
      console.error(`[echotorrent] ${channel}.${kind} handler failed:`, error);
    }
  };
  for (const kind of kinds) {
    api.addEventListener(`${channel}.${kind}`, (event) => deliver(kind, event.detail, "live"));
  }
  async function catchUp() {
    const id = clientId();
    if (!id) return;
    const query = new URLSearchParams({ clientId: id, channel });
    const response = await api.fetchApi(`/echotorrent/events?${query}`);
    if (!response.ok) throw new Error(`GET /echotorrent/events: HTTP ${response.status}`);
    const { streams } = await response.json();
    for (const stream of streams) {
      const messages = [stream.header, ...stream.events].sort((a, b) => a.seq - b.seq);
      for (const message of messages) if (kinds.includes(message.kind)) deliver(message.kind, message, "kept");
    }
  }
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
