// Registers the live stream player with the ComfyUI front end: a player widget on the Streaming Sampler (and on
// any node that streams chunks, e.g. a streaming save node), fed by the echotorrent.stream events; on page load
// (a reload mid-run) and after a reconnect it catches up from the server's kept events and marks runs that ComfyUI
// no longer runs as stopped.
import { app } from "../../scripts/app.js";
import { activePromptIds, onPromptFinished, subscribeNodeEvents } from "./node_events.js";
import { StreamPlayer } from "./stream_player.js";
import { StreamRunStore } from "./stream_runs.js";

const PLAYER_NODE_TYPES = new Set(["EchoTorrentStreamingSampler", "EchoTorrentSaveStream"]);
const WIDGET_NAME = "echotorrent_player";
const PLAYER_MIN_HEIGHT = 260;
const PLAYER_MIN_WIDTH = 340;

const store = new StreamRunStore();
const events = subscribeNodeEvents("echotorrent.stream", ["start", "chunk", "end"], (kind, message, source) => {
  store.handle(kind, message, source);
  if (kind === "start") addPlayer(app.graph?.getNodeById(message.node));
}, markStoppedRuns);
// ComfyUI's end of a prompt comes after the prompt's own events: a run still incomplete then missed some (or was
// interrupted), so the page catches up too (a kept end event then adds the saved video).
onPromptFinished((promptId, status) => {
  const incomplete = [...store.runs.values()].some((run) => run.promptId === promptId && !run.complete);
  store.endPrompt(promptId, status);
  if (incomplete) events.catchUp("prompt ended, its stream incomplete");
});

// Runs whose prompt ComfyUI no longer runs or queues get no more chunks (their end was missed). Only runs there
// before asking count: a run that starts while GET /queue is under way is missing from its answer.
async function markStoppedRuns() {
  const unfinished = [...store.runs.values()].filter((run) => !run.complete);
  if (!unfinished.length) return;
  const active = await activePromptIds();
  for (const run of unfinished) {
    if (!run.complete && !active.has(run.promptId)) store.endPrompt(run.promptId, "stopped");
  }
}

function addPlayer(node) {
  if (!node || node.echotorrentPlayer) return;
  const player = new StreamPlayer(store, node);
  const widget = node.addDOMWidget(WIDGET_NAME, WIDGET_NAME, player.element, {
    serialize: false, hideOnZoom: false, getMinHeight: () => PLAYER_MIN_HEIGHT,
  });
  widget.serialize = false;
  node.echotorrentPlayer = player;
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    player.destroy();
    delete node.echotorrentPlayer;
    return onRemoved?.apply(this, arguments);
  };
  fitNode(node);
}

function fitNode(node) {
  const [width, height] = node.computeSize();
  node.setSize([Math.max(node.size[0], width, PLAYER_MIN_WIDTH), Math.max(node.size[1], height)]);
}

app.registerExtension({
  name: "echotorrent.StreamPlayer",
  nodeCreated(node) {
    if (PLAYER_NODE_TYPES.has(node.comfyClass)) addPlayer(node);
  },
  loadedGraphNode(node) {
    if (node.echotorrentPlayer) fitNode(node);
  },
});
