// The player shown on a streaming node: picture (canvas), a timeline of chunks arrived vs total with the
// playhead, measured generation speed and real-time factor, Replay, and a choice of the node's runs. It plays the
// node's runs one after another (several queued prompts each play on their own), following a live run as its
// chunks arrive. Everything the server sends is drawn on canvases or set as textContent, never parsed as HTML.
import { api } from "../../scripts/api.js";
import { subscriptionRecords } from "./node_events.js";
import { soundOutput } from "./stream_audio.js";
import { StreamPlayback } from "./stream_playback.js";

const HISTORY_LIMIT = 12; // playbacks remembered for snapshot()
const STEP_MS = 200; // the timer that keeps playback going in a hidden tab, where animation frames stop
const COLORS = { track: "#333", arrived: "#3a7d44", playhead: "#f0f0f0", text: "#ddd" };

function element(tag, style = {}, text = null) {
  const node = document.createElement(tag);
  Object.assign(node.style, style);
  if (text !== null) node.textContent = text;
  return node;
}

export class StreamPlayer {
  constructor(store, node) {
    this.store = store;
    this.node = node;
    this.run = null;
    this.playback = null;
    this.history = [];
    this.started = new WeakSet(); // runs this player has begun playing
    this.boundId = null;
    this.buildElements();
    this.unsubscribe = store.subscribe((run) => this.onRunChanged(run));
    this.frameRequest = requestAnimationFrame(() => this.onAnimationFrame());
    this.timer = setInterval(() => this.tick(), STEP_MS);
  }

  buildElements() {
    this.element = element("div", {
      display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%", boxSizing: "border-box",
      color: COLORS.text, font: "12px sans-serif",
    });
    this.element.className = "echotorrent-player";
    this.screen = element("canvas", { width: "100%", flex: "1 1 auto", minHeight: "0", objectFit: "contain",
                                      background: "#000" });
    this.screen.width = 320;
    this.screen.height = 180;
    this.timeline = element("canvas", { width: "100%", height: "10px", flex: "0 0 auto", cursor: "pointer" });
    this.timeline.height = 10;
    this.timeline.addEventListener("click", (event) => this.seek(event));
    this.timelineWidth = 300; // its width in CSS pixels, kept by an observer (reading it each frame forces layout)
    this.resizes = new ResizeObserver(([entry]) => {
      this.timelineWidth = Math.max(1, Math.round(entry.contentRect.width || 300));
    });
    this.resizes.observe(this.timeline);
    this.status = element("div", { flex: "0 0 auto", lineHeight: "16px", whiteSpace: "nowrap", overflow: "hidden",
                                   textOverflow: "ellipsis" }, "no stream yet");
    const controls = element("div", { display: "flex", flex: "0 0 auto", gap: "6px", alignItems: "center" });
    this.replayButton = element("button", {}, "Replay");
    this.replayButton.disabled = true;
    this.replayButton.addEventListener("click", () => this.replay());
    this.runChoice = element("select", { flex: "1 1 auto", minWidth: "0" });
    this.runChoice.addEventListener("change", () => this.chooseRun(this.runChoice.value));
    this.savedLink = element("a", { color: COLORS.text, display: "none" }, "");
    this.savedLink.target = "_blank";
    this.savedLink.rel = "noopener";
    controls.append(this.replayButton, this.runChoice, this.savedLink);
    this.element.append(this.screen, this.timeline, this.status, controls);
  }

  // The page's sound output, created when first needed (browsers warn about an AudioContext made too early).
  get sound() {
    return soundOutput();
  }

  get nodeId() {
    return String(this.node.id);
  }

  onRunChanged(run) {
    if (run.node !== this.nodeId) return;
    if (run === this.run) {
      this.playback.update();
    } else if (!this.run || (this.playback.state === "ended" && !this.started.has(run))) {
      this.select(run, run.startSource === "kept" ? "join" : "live");
    }
    this.refreshRunChoice();
  }

  // The node's id is final only after the graph configured it: (re)bind to its runs when it changes. Runs known
  // then are joined at the newest, unless `onRunChanged` already chose one of them (a tab whose timer ticks late,
  // hidden or busy, hears a run start before its first tick): that one keeps playing and the rest follow it live.
  bind() {
    this.boundId = this.nodeId;
    const runs = this.store.runsOf(this.nodeId);
    if (!runs.includes(this.run)) {
      for (const run of runs) this.started.add(run);
      const newest = runs.at(-1);
      if (newest) this.select(newest, "join");
    }
    this.refreshRunChoice();
  }

  // Show `run`: "live" plays it from its start; "join" (a run already under way when this page met it) plays from
  // its newest chunk, or shows its last frame when it has ended.
  select(run, mode) {
    this.playback?.destroy();
    this.run = run;
    this.started.add(run);
    this.playback = new StreamPlayback(run, this.sound, (bitmap) => this.paint(bitmap));
    this.remember(mode);
    if (mode === "join") this.playback.followEdge = true;
    else this.playback.play(0);
    this.screen.width = run.start.width;
    this.screen.height = run.start.height;
    this.refreshRunChoice();
  }

  remember(mode) {
    this.history.push({ promptId: this.run.promptId, mode, playback: this.playback });
    if (this.history.length > HISTORY_LIMIT) this.history.shift();
  }

  replay() {
    if (!this.run) return;
    this.select(this.run, "live");
    this.history.at(-1).mode = "replay";
  }

  chooseRun(key) {
    const run = this.store.runs.get(key);
    if (run && run !== this.run) this.select(run, "live");
  }

  seek(event) {
    if (!this.run) return;
    const box = this.timeline.getBoundingClientRect();
    const fraction = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
    this.playback.play((fraction * this.run.start.framesTotal) / this.run.fps);
  }

  paint(bitmap) {
    const context = this.screen.getContext("2d");
    if (this.screen.width !== bitmap.width || this.screen.height !== bitmap.height) {
      this.screen.width = bitmap.width;
      this.screen.height = bitmap.height;
    }
    context.drawImage(bitmap, 0, 0);
  }

  onAnimationFrame() {
    this.frameRequest = requestAnimationFrame(() => this.onAnimationFrame());
    this.tick(true);
  }

  // `animationFrame`: called for an animation frame (else by the timer).
  tick(animationFrame = false) {
    if (this.boundId !== this.nodeId) this.bind();
    if (!this.playback) return;
    this.playback.tick(animationFrame);
    if (this.playback.state === "ended") {
      const next = this.store.runsOf(this.nodeId).find((run) => !this.started.has(run));
      if (next) this.select(next, "live");
    }
    this.drawTimeline();
    this.showStatus();
  }

  // Redrawn only when it changes (a canvas redrawn every animation frame costs the page a composite each time).
  drawTimeline() {
    const width = this.timelineWidth;
    const { chunksTotal, framesTotal } = this.run.start;
    const playhead = (this.playback.mediaTime() * this.run.fps / framesTotal) * width;
    const drawn = `${this.run.key}:${width}:${this.run.chunks.size}:${Math.round(playhead)}`;
    if (drawn === this.timelineDrawn) return;
    this.timelineDrawn = drawn;
    if (this.timeline.width !== width) this.timeline.width = width;
    const context = this.timeline.getContext("2d");
    context.fillStyle = COLORS.track;
    context.fillRect(0, 0, width, 10);
    context.fillStyle = COLORS.arrived;
    for (const chunk of this.run.chunks.values()) {
      const left = (chunk.firstFrame / framesTotal) * width;
      context.fillRect(left, 1, Math.max(1, (chunk.frameCount / framesTotal) * width - 1), 8);
    }
    context.fillStyle = COLORS.playhead;
    context.fillRect(Math.min(width - 2, playhead), 0, 2, 10);
    this.timeline.title = `${this.run.chunks.size} of ${chunksTotal} chunks`;
  }

  showStatus() {
    const run = this.run;
    const generation = run.generationFps();
    const speed = generation === null ? "" : ` · generating ${generation.toFixed(1)} fps = ${(generation / run.fps).toFixed(2)}x real time`;
    const ending = run.ended && run.ended.status !== "finished" ? ` (${run.ended.status})` : "";
    const sound = this.sound.running ? "" : " · click for sound";
    const text = `chunk ${run.chunks.size}/${run.start.chunksTotal}${ending} · ${this.playback.state}${speed}${sound}`;
    if (this.status.textContent !== text) this.status.textContent = text;
    const replayable = run.complete && run.chunks.size > 0;
    if (this.replayButton.disabled === replayable) this.replayButton.disabled = !replayable;
    this.showSavedVideo(run.ended?.savedVideo ?? null);
  }

  showSavedVideo(saved) {
    if (!saved) {
      if (this.savedLink.style.display !== "none") this.savedLink.style.display = "none";
      return;
    }
    const query = new URLSearchParams({ filename: saved.filename, subfolder: saved.subfolder ?? "", type: saved.type ?? "output" });
    const href = api.apiURL(`/view?${query}`);
    if (this.savedLink.getAttribute("href") !== href) {
      this.savedLink.href = href;
      this.savedLink.textContent = String(saved.filename);
    }
    if (this.savedLink.style.display !== "") this.savedLink.style.display = "";
  }

  refreshRunChoice() {
    const runs = this.store.runsOf(this.nodeId);
    const labels = runs.map((run, i) => `run ${i + 1} · ${run.promptId.slice(0, 8)} · ${run.chunks.size}/${run.start.chunksTotal}`);
    const options = [...this.runChoice.options];
    if (options.length !== runs.length || options.some((option, i) => option.value !== runs[i].key)) {
      this.runChoice.replaceChildren(...runs.map((run, i) => {
        const option = element("option", {}, labels[i]);
        option.value = run.key;
        return option;
      }));
    } else {
      options.forEach((option, i) => {
        if (option.textContent !== labels[i]) option.textContent = labels[i];
      });
    }
    if (this.run) this.runChoice.value = this.run.key;
  }

  // What the player holds and has played, for tests and debugging.
  snapshot() {
    const summary = (run) => ({
      promptId: run.promptId, chunksTotal: run.start.chunksTotal, framesTotal: run.start.framesTotal, fps: run.fps,
      width: run.start.width, height: run.start.height,
      chunks: [...run.chunks.values()].sort((a, b) => a.index - b.index).map((chunk) => ({
        index: chunk.index, firstFrame: chunk.firstFrame, frameCount: chunk.frameCount, frames: chunk.frames.length,
        samples: chunk.audio?.samples.length ?? 0, sampleRate: chunk.audio?.sampleRate ?? null,
        source: chunk.source, receivedAt: chunk.receivedAt,
      })),
      ended: run.ended?.status ?? null, complete: run.complete,
    });
    return {
      node: this.nodeId, current: this.run?.promptId ?? null, state: this.playback?.state ?? null,
      mediaTime: this.playback?.mediaTime() ?? null, audioTime: this.sound.context.currentTime,
      soundRunning: this.sound.running, level: this.sound.level(), status: this.status.textContent,
      subscriptions: subscriptionRecords(),
      savedLink: this.savedLink.style.display === "none" ? null : this.savedLink.href,
      runs: this.store.runsOf(this.nodeId).map(summary),
      playbacks: this.history.map(({ promptId, mode, playback }) => ({
        promptId, mode, state: playback.state, buffering: playback.log.buffering, starts: playback.log.starts,
        late: playback.log.late, drawn: playback.log.drawn, scheduled: playback.log.scheduled,
        animationFrames: playback.log.animationFrames,
      })),
    };
  }

  destroy() {
    cancelAnimationFrame(this.frameRequest);
    clearInterval(this.timer);
    this.resizes.disconnect();
    this.unsubscribe();
    this.playback?.destroy();
    this.playback = null;
  }
}
