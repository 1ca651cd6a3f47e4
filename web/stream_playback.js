// Plays one StreamRun: its chunks' sound scheduled on the shared clock (Web Audio), its frames chosen from that
// same clock, so picture and sound stay together. Honest buffering: when the next frame has not arrived yet,
// playback stops at the last one and waits ("buffering") until a chunk more is there; nothing is skipped.

const START_LEAD = 0.08; // seconds between scheduling a start and its first sample
const LOOKAHEAD_FRAMES = 24; // frames decoded ahead of the playhead
const LOG_LIMIT = 20000; // drawn-frame records kept for the tests and the stats

export class StreamPlayback {
  // draw(bitmap, frameIndex) paints a decoded frame.
  constructor(run, sound, draw) {
    this.run = run;
    this.sound = sound;
    this.draw = draw;
    this.state = "waiting"; // waiting | playing | buffering | ended
    this.position = 0; // media seconds while not playing
    this.anchor = null; // while playing: { clock, media, withSound }
    this.sources = [];
    this.scheduled = new Set(); // chunk indices whose sound is scheduled since the last start
    this.bitmaps = new Map(); // frame index -> Promise<ImageBitmap>
    this.shownFrame = -1;
    this.followEdge = false; // while waiting: start at the newest chunk (a page that joins a run midway)
    this.log = { drawn: [], scheduled: [], buffering: 0, starts: 0 };
    this.onStateChange = () => {
      if (this.state === "playing") this.startAt(this.mediaTime());
    };
    sound.context.addEventListener("statechange", this.onStateChange);
  }

  get fps() {
    return this.run.fps;
  }

  mediaTime() {
    if (!this.anchor) return this.position;
    return Math.max(this.anchor.media, this.anchor.media + this.clock(this.anchor.withSound) - this.anchor.clock);
  }

  // Seconds on the sound card's clock, or on the page's while sound is not running.
  clock(withSound) {
    return withSound ? this.sound.context.currentTime : performance.now() / 1000;
  }

  // [start, end) in media seconds of the frames that can be played without a gap.
  available() {
    const { firstFrame, endFrame } = this.run.contiguous();
    return [firstFrame / this.fps, endFrame / this.fps];
  }

  // Play from `seconds` (clamped to what has arrived); waits for the first chunk if none is there yet.
  play(seconds = 0) {
    const [start, end] = this.available();
    this.halt();
    this.position = Math.min(Math.max(seconds, start), Math.max(start, end));
    this.setState(end > this.position ? "playing" : "waiting");
    if (this.state === "playing") this.begin(this.position);
  }

  // Start the clock at `media` once its frame is decoded, so the first frame is shown on time.
  begin(media) {
    const token = (this.beginToken = {});
    const frame = Math.floor(media * this.fps + 1e-6);
    this.decode(frame);
    Promise.resolve(this.bitmaps.get(frame)).then(() => {
      if (this.beginToken === token && this.state === "playing" && !this.anchor) this.startAt(media);
    });
  }

  startAt(media) {
    this.stopSources();
    const withSound = this.sound.running;
    this.anchor = { clock: this.clock(withSound) + START_LEAD, media, withSound };
    this.scheduled.clear();
    this.log.starts += 1;
    this.scheduleSound();
  }

  // Schedule the sound of every contiguous chunk not scheduled yet since the last start.
  scheduleSound() {
    if (!this.anchor?.withSound) return;
    const { context, input } = this.sound;
    for (const chunk of this.run.contiguous().chunks) {
      if (this.scheduled.has(chunk.index) || !chunk.audio) continue;
      this.scheduled.add(chunk.index);
      const { sampleRate, firstSample, samples } = chunk.audio;
      const begin = firstSample / sampleRate;
      const end = begin + samples.length / sampleRate;
      if (end <= this.anchor.media) continue;
      const buffer = context.createBuffer(1, samples.length, sampleRate);
      buffer.copyToChannel(samples, 0);
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(input);
      const when = this.anchor.clock + Math.max(0, begin - this.anchor.media);
      const offset = Math.max(0, this.anchor.media - begin);
      source.start(when, offset);
      source.onended = () => {
        this.sources = this.sources.filter((s) => s !== source);
      };
      this.sources.push(source);
      this.log.scheduled.push({ chunk: chunk.index, when, offset, duration: end - begin - offset });
    }
  }

  stopSources() {
    for (const source of this.sources) {
      source.onended = null;
      source.stop();
      source.disconnect();
    }
    this.sources = [];
  }

  // Stop sound and clock, keeping the position.
  halt() {
    if (this.anchor) this.position = this.mediaTime();
    this.anchor = null;
    this.beginToken = null;
    this.stopSources();
  }

  setState(state) {
    if (state === "buffering" && this.state !== "buffering") this.log.buffering += 1;
    this.state = state;
  }

  // A chunk arrived or the run ended.
  update() {
    if (this.state === "playing") this.scheduleSound();
  }

  // Called every animation frame.
  tick() {
    const [start, end] = this.available();
    if (this.state === "playing") {
      const media = this.mediaTime();
      if (media >= end) {
        this.halt();
        this.position = end;
        this.setState(this.run.complete ? "ended" : "buffering");
      }
    } else if (this.state === "waiting" && this.followEdge) {
      this.joinAtEdge(end);
    } else if (this.state === "waiting" || this.state === "buffering") {
      const ahead = end - Math.max(this.position, start);
      const chunkSeconds = this.run.contiguous().chunks.at(-1)?.frameCount / this.fps || Infinity;
      if (ahead > 0 && (ahead >= chunkSeconds - 1e-6 || this.run.complete)) {
        this.position = Math.max(this.position, start);
        this.setState("playing");
        this.begin(this.position);
      } else if (this.run.complete && this.state === "buffering") {
        this.setState("ended");
      }
    }
    this.showFrameAt(this.currentFrame());
  }

  // Start at the newest chunk that arrived, or show the last frame when the run has ended already.
  joinAtEdge(end) {
    const newest = this.run.contiguous().chunks.at(-1);
    if (!newest) return;
    this.followEdge = false;
    if (this.run.ended) {
      this.position = end;
      this.setState("ended");
    } else {
      this.play(newest.firstFrame / this.fps);
    }
  }

  // The frame index for the playhead (the last frame once playback stopped at the end of what arrived).
  currentFrame() {
    const media = this.mediaTime();
    const frame = Math.floor(media * this.fps + 1e-6);
    const { firstFrame, endFrame } = this.run.contiguous();
    return Math.min(Math.max(frame, firstFrame), endFrame - 1);
  }

  showFrameAt(index) {
    if (index < 0) return;
    for (let ahead = index; ahead < index + LOOKAHEAD_FRAMES; ahead++) this.decode(ahead);
    for (const old of this.bitmaps.keys()) {
      if (old < index - 1) this.release(old);
    }
    if (index === this.shownFrame) return;
    const pending = this.bitmaps.get(index);
    if (!pending) return;
    pending.then((bitmap) => {
      if (!bitmap || this.currentFrame() !== index || this.shownFrame === index) return;
      this.shownFrame = index;
      this.draw(bitmap, index);
      if (this.log.drawn.length < LOG_LIMIT) {
        this.log.drawn.push({ frame: index, media: this.mediaTime(), clock: this.sound.context.currentTime,
                              withSound: Boolean(this.anchor?.withSound), state: this.state, start: this.log.starts,
                              startClock: this.anchor?.clock ?? null, at: performance.now() });
      }
    });
  }

  decode(index) {
    if (this.bitmaps.has(index)) return;
    const blob = this.run.frame(index);
    if (!blob) return;
    this.bitmaps.set(index, createImageBitmap(blob).catch(() => null));
  }

  release(index) {
    this.bitmaps.get(index)?.then((bitmap) => bitmap?.close());
    this.bitmaps.delete(index);
  }

  destroy() {
    this.halt();
    this.sound.context.removeEventListener("statechange", this.onStateChange);
    for (const index of [...this.bitmaps.keys()]) this.release(index);
  }
}
