// The page's one sound output for the players: an AudioContext (the shared clock), a master gain and an analyser
// (the measured output level). Browsers start it suspended until the user clicks or presses a key on the page,
// unless their autoplay policy allows sound; until then the players run on a silent wall clock.

let output = null;

export function soundOutput() {
  if (output) return output;
  const context = new AudioContext({ latencyHint: "playback" });
  const input = context.createGain();
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  input.connect(analyser);
  analyser.connect(context.destination);
  const unlock = () => {
    if (context.state === "suspended") context.resume();
  };
  for (const event of ["pointerdown", "keydown"]) document.addEventListener(event, unlock, { capture: true });
  unlock();
  output = {
    context,
    input,
    get running() {
      return context.state === "running";
    },
    // Root mean square of the last 2048 output samples (0: silence).
    level() {
      const samples = new Float32Array(analyser.fftSize);
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const value of samples) sum += value * value;
      return Math.sqrt(sum / samples.length);
    },
  };
  return output;
}
