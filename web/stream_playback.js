// Plays one StreamRun: its chunks' sound scheduled on the shared clock (Web Audio), its frames chosen from that
// same clock, so picture and sound stay together. Frames are decoded (createImageBitmap) as their chunks arrive,
// up to READY_AHEAD frames past the playhead, so showing one is a drawImage of a bitmap already there.
// Honest buffering: when the next frame has not arrived yet, playback stops at the last one and waits ("buffering")
// until a chunk more is there (and its first frame is decoded); nothing is skipped.

const START_LEAD = 0.08; // seconds between scheduling a start and its first sample
const READY_AHEAD = 48; // frames decoded ahead of the playhead (about 15 MB at 320x240; 2 s at 25 fps)
const LOG_LIMIT = 20000; // drawn-frame records kept for the tests and the stats

export class StreamPlayback {
  // draw(bitmap, frameIndex) paints a decoded frame.
  constructor(run, sound, draw) {
    this.run = run;
    this.sound = sound;
    this.draw = draw;
    this.state = "waiting"; // waiting | playing | buffering | ending (clock at the end, last frame not painted) | ended
    this.position = 0; // media seconds while not playing
    this.anchor = null; // while playing: { clock, media, withSound }
    this.sources = [];
    this.scheduled = new Set(); // chunk indices whose sound is scheduled since the last start
    this.decoding = new Set(); // frame indices being decoded
    this.undecodable = new Set(); // frame indices whose JPEG could not be decoded
    this.ready = new Map(); // frame index -> ImageBitmap
    this.shownFrame = -1;
    this.lastLate = -1; // the last frame counted in log.late
    this.followEdge = false; // while waiting: start at the newest chunk (a page that joins a run midway)
    this.destroyed = false;
    // drawn: one record a painted frame; late: frames whose time came before their bitmap was decoded;
    // animationFrames: the frame due at each animation frame while the clock ran (what the page let it paint).
    this.log = { drawn: [], scheduled: [], buffering: 0, starts: 0, late: 0, animationFrames: [] };
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

  frameAt(media) {
    return Math.floor(media * this.fps + 1e-6);
  }

  // Play from `seconds` (clamped to what has arrived): the clock starts once that frame is decoded (or, with
  // nothing there yet, once the first chunk arrived).
  play(seconds = 0) {
    const [start, end] = this.available();
    this.halt();
    this.position = Math.min(Math.max(seconds, start), Math.max(start, end));
    this.setState("waiting");
    this.tick();
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
    this.stopSources();
  }

  setState(state) {
    if (state === "buffering" && this.state !== "buffering") this.log.buffering += 1;
    this.state = state;
  }

  // A chunk arrived or the run ended.
  update() {
    if (this.state === "playing") this.scheduleSound();
    this.prepare(this.currentFrame());
  }

  // Called every animation frame (`animationFrame`), by a timer (which keeps a hidden tab going) and on events.
  tick(animationFrame = false) {
    if (this.destroyed) return;
    const [start, end] = this.available();
    if (this.state === "playing") {
      if (this.mediaTime() >= end) {
        this.halt();
        this.position = end;
        this.setState(this.run.complete ? "ending" : "buffering");
      }
    } else if (this.state === "waiting" && this.followEdge) {
      this.joinAtEdge(end);
    } else if (this.state === "waiting" || this.state === "buffering") {
      this.resumeIfReady(start, end);
    }
    const frame = this.currentFrame();
    this.prepare(frame);
    this.show(frame);
    if (animationFrame && this.state === "playing" && this.log.animationFrames.length < LOG_LIMIT) {
      this.log.animationFrames.push({ frame, at: performance.now() });
    }
    if (this.state === "ending" && (this.shownFrame === frame || this.undecodable.has(frame))) this.setState("ended");
  }

  // Start the clock when a whole chunk (or the rest of a finished run) is there past the position and the frame
  // at the position is decoded.
  resumeIfReady(start, end) {
    const ahead = end - Math.max(this.position, start);
    const chunkSeconds = this.run.contiguous().chunks.at(-1)?.frameCount / this.fps || Infinity;
    if (ahead > 0 && (ahead >= chunkSeconds - 1e-6 || this.run.complete)) {
      this.position = Math.max(this.position, start);
      if (this.ready.has(this.frameAt(this.position))) {
        this.setState("playing");
        this.startAt(this.position);
      }
    } else if (this.run.complete && this.state === "buffering") {
      this.setState("ending");
    }
  }

  // Start at the newest chunk that arrived, or show the last frame when the run has ended already.
  joinAtEdge(end) {
    const newest = this.run.contiguous().chunks.at(-1);
    if (!newest) return;
    this.followEdge = false;
    if (this.run.ended) {
      this.position = end;
      this.setState("ending");
    } else {
      this.play(newest.firstFrame / this.fps);
    }
  }

  // The frame index for the playhead (the last frame once playback stopped at the end of what arrived).
  currentFrame() {
    const { firstFrame, endFrame } = this.run.contiguous();
    return Math.min(Math.max(this.frameAt(this.mediaTime()), firstFrame), endFrame - 1);
  }

  // Decode the arrived frames from `index` to READY_AHEAD past it; release the bitmaps behind it.
  prepare(index) {
    if (index < 0) return;
    for (const [old, bitmap] of this.ready) {
      if (old < index && old !== this.shownFrame) {
        bitmap.close();
        this.ready.delete(old);
      }
    }
    for (let ahead = index; ahead < index + READY_AHEAD; ahead++) this.decode(ahead);
  }

  decode(index) {
    if (this.ready.has(index) || this.decoding.has(index)) return;
    const blob = this.run.frame(index);
    if (!blob) return;
    this.decoding.add(index);
    createImageBitmap(blob).then((bitmap) => {
      this.decoding.delete(index);
      if (this.destroyed || index < this.currentFrame()) {
        bitmap.close();
        return;
      }
      this.ready.set(index, bitmap);
      if (this.state !== "playing") this.tick(); // its frame may be the one a start or the end waits for
    }, (error) => {
      this.decoding.delete(index);
      this.undecodable.add(index);
      console.error(`[echotorrent] frame ${index} could not be decoded:`, error);
    });
  }

  // Paint frame `index` if it is decoded and not on screen yet.
  show(index) {
    if (index < 0 || index === this.shownFrame) return;
    const bitmap = this.ready.get(index);
    if (!bitmap) {
      if (this.state === "playing" && index !== this.lastLate) {
        this.lastLate = index;
        this.log.late += 1;
      }
      return;
    }
    const previous = this.ready.get(this.shownFrame);
    if (previous && this.shownFrame < index) {
      previous.close();
      this.ready.delete(this.shownFrame);
    }
    this.shownFrame = index;
    this.draw(bitmap, index);
    if (this.log.drawn.length < LOG_LIMIT) {
      this.log.drawn.push({ frame: index, media: this.mediaTime(), clock: this.sound.context.currentTime,
                            withSound: Boolean(this.anchor?.withSound), state: this.state, start: this.log.starts,
                            startClock: this.anchor?.clock ?? null, at: performance.now() });
    }
  }

  destroy() {
    this.destroyed = true;
    this.halt();
    this.sound.context.removeEventListener("statechange", this.onStateChange);
    for (const bitmap of this.ready.values()) bitmap.close();
    this.ready.clear();
  }
}
