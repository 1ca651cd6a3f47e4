// The streamed runs this page has received (echotorrent.stream.start / chunk / end), keyed by prompt id + node id,
// independent of the graph: a node removed mid-run leaves its run here, a player created later finds it.
// Frames stay as JPEG blobs (decoded when played), sound as Float32 PCM per chunk.

const MAX_RUNS = 8; // runs kept by the page; the oldest finished ones go first
const MAX_RUN_BYTES = 256 * 2 ** 20; // beyond it a run drops its oldest chunks (the replay then starts later)

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Little-endian 16-bit PCM (base64) -> Float32Array in [-1, 1].
export function pcm16ToFloat32(text) {
  const bytes = base64Bytes(text);
  const view = new DataView(bytes.buffer);
  const samples = new Float32Array(bytes.length >> 1);
  for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(2 * i, true) / 32767;
  return samples;
}

export class StreamRun {
  constructor(message, startSource) {
    this.startSource = startSource; // "live": this page saw the run start; "kept": it caught up after a reload
    this.promptId = String(message.prompt_id);
    this.node = String(message.node);
    this.key = `${this.promptId}:${this.node}`;
    this.chunks = new Map(); // index -> { index, firstFrame, frameCount, frames: Blob[], audio, seconds, receivedAt }
    this.bytes = 0;
    this.droppedChunks = 0;
    this.ended = null; // { status: "finished" | "error" | "interrupted" | "stopped", savedVideo, seconds }
    this.createdAt = performance.now();
    this.setStart(message);
  }

  setStart(message) {
    this.start = {
      chunksTotal: Number(message.chunks_total), fps: Number(message.fps), framesTotal: Number(message.frames_total),
      width: Number(message.width), height: Number(message.height), sampleRate: message.sample_rate ?? null,
    };
  }

  get fps() {
    return this.start.fps;
  }

  addChunk(message, source) {
    const index = Number(message.index);
    if (this.chunks.has(index)) return false;
    const frames = message.jpeg.map((text) => new Blob([base64Bytes(text)], { type: "image/jpeg" }));
    const audio = message.audio
      ? { sampleRate: Number(message.audio.sample_rate), firstSample: Number(message.audio.first_sample),
          samples: pcm16ToFloat32(message.audio.pcm16) }
      : null;
    const chunk = {
      index, firstFrame: Number(message.first_frame), frameCount: Number(message.frame_count), frames, audio,
      seconds: Number(message.seconds), receivedAt: performance.now(), source,
      bytes: frames.reduce((sum, blob) => sum + blob.size, 0) + (audio ? audio.samples.byteLength : 0),
    };
    this.chunks.set(index, chunk);
    this.bytes += chunk.bytes;
    while (this.bytes > MAX_RUN_BYTES && this.chunks.size > 1) this.dropOldestChunk();
    return true;
  }

  dropOldestChunk() {
    const oldest = Math.min(...this.chunks.keys());
    this.bytes -= this.chunks.get(oldest).bytes;
    this.chunks.delete(oldest);
    this.droppedChunks += 1;
  }

  // The node's end event (`fromNode`) says the most: it replaces what ComfyUI's end of the prompt said.
  setEnded(status, savedVideo = null, seconds = null, fromNode = false) {
    if (this.ended && (this.ended.status === "finished" || this.ended.fromNode) && !fromNode) return;
    this.ended = { status, savedVideo, seconds, fromNode };
  }

  // The chunks in order, and the frames [firstFrame, endFrame) they cover without a gap from the first kept one.
  contiguous() {
    const ordered = [...this.chunks.values()].sort((a, b) => a.index - b.index);
    const run = [];
    for (const chunk of ordered) {
      if (run.length && chunk.firstFrame !== run.at(-1).firstFrame + run.at(-1).frameCount) break;
      run.push(chunk);
    }
    const firstFrame = run.length ? run[0].firstFrame : 0;
    const endFrame = run.length ? run.at(-1).firstFrame + run.at(-1).frameCount : 0;
    return { chunks: run, firstFrame, endFrame };
  }

  frame(index) {
    for (const chunk of this.chunks.values()) {
      if (index >= chunk.firstFrame && index < chunk.firstFrame + chunk.frameCount) {
        return chunk.frames[index - chunk.firstFrame];
      }
    }
    return null;
  }

  // No more chunks will come: ended, or every chunk is here.
  get complete() {
    return this.ended !== null || this.chunks.size + this.droppedChunks >= this.start.chunksTotal;
  }

  // Frames generated per second of generation time (the server's measurement), over the chunks received.
  generationFps() {
    let frames = 0, seconds = 0;
    for (const chunk of this.chunks.values()) {
      frames += chunk.frameCount;
      seconds += chunk.seconds;
    }
    return seconds > 0 ? frames / seconds : null;
  }
}

export class StreamRunStore {
  constructor() {
    this.runs = new Map();
    this.listeners = new Set();
  }

  // listener(run) after any change of a run.
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(run) {
    for (const listener of [...this.listeners]) listener(run);
  }

  // The runs of node `node`, oldest first.
  runsOf(node) {
    return [...this.runs.values()].filter((run) => run.node === String(node)).sort((a, b) => a.createdAt - b.createdAt);
  }

  handle(kind, message, source) {
    const key = `${message.prompt_id}:${message.node}`;
    let run = this.runs.get(key);
    if (kind === "start") {
      if (run) run.setStart(message);
      else this.add((run = new StreamRun(message, source)));
    } else if (!run) {
      return; // a chunk whose start was never seen (the page opened after the kept log dropped it)
    } else if (kind === "chunk") {
      if (!run.addChunk(message, source)) return;
    } else if (kind === "end") {
      run.setEnded("finished", message.saved_video ?? null, message.seconds ?? null, true);
    }
    this.notify(run);
  }

  add(run) {
    this.runs.set(run.key, run);
    while (this.runs.size > MAX_RUNS) {
      const oldest = [...this.runs.values()].sort((a, b) => Number(b.complete) - Number(a.complete) || a.createdAt - b.createdAt)[0];
      this.runs.delete(oldest.key);
    }
  }

  // ComfyUI ended a prompt: its runs get no more chunks.
  endPrompt(promptId, status) {
    for (const run of this.runs.values()) {
      if (run.promptId === promptId && !run.ended) {
        run.setEnded(status);
        this.notify(run);
      }
    }
  }
}
