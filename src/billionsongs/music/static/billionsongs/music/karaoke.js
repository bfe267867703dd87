/* Billion Songs karaoke player: plays a song's karaoke MIDI file with a small WebAudio synthesizer
 * and highlights each lyric syllable as it is sung. No dependencies, works offline.
 *
 * HTML contract (full version in billionsongs/music/html.py):
 *   <button data-karaoke-play="/song/ID/karaoke.mid" data-karaoke-lyrics="ELEMENT-ID">Play</button>
 *   <div id="ELEMENT-ID"> ... <span class="syl" data-t="SECONDS">syl</span> ... </div>
 * While playing, the syllable being sung has class "bs-now", earlier ones "bs-sung"; the button has
 * class "bs-playing", text "Stop" and data-karaoke-state="playing" (then "ended" or "stopped").
 * Channels follow the file: 1 melody, 2 chords, 3 bass, 10 drums (GM kick 36, snare 38, hat 42, crash 49).
 */
(function () {
  "use strict";

  /* Standard MIDI file (format 0 or 1) -> {notes: [{time, dur, ch, note, vel}], duration} in seconds. */
  function parseMidi(buffer) {
    const d = new DataView(buffer);
    let p = 0;
    const str = (n) => { let s = ""; for (let i = 0; i < n; i++) s += String.fromCharCode(d.getUint8(p + i)); p += n; return s; };
    const u32 = () => { const v = d.getUint32(p); p += 4; return v; };
    const u16 = () => { const v = d.getUint16(p); p += 2; return v; };
    const vlq = () => { let v = 0, b; do { b = d.getUint8(p++); v = v * 128 + (b & 0x7f); } while (b & 0x80); return v; };
    if (str(4) !== "MThd") throw new Error("not a MIDI file");
    const headerEnd = u32() + p;
    u16();
    const trackCount = u16(), division = u16();
    p = headerEnd;
    const events = [];
    for (let t = 0; t < trackCount && p < d.byteLength; t++) {
      const id = str(4), end = u32() + p;
      let tick = 0, status = 0;
      while (id === "MTrk" && p < end) {
        tick += vlq();
        if (d.getUint8(p) & 0x80) status = d.getUint8(p++);  // otherwise running status
        if (status === 0xff) {
          const type = d.getUint8(p++), n = vlq();
          if (type === 0x51) events.push({ tick, tempo: (d.getUint8(p) << 16) | (d.getUint8(p + 1) << 8) | d.getUint8(p + 2) });
          p += n;
        } else if (status === 0xf0 || status === 0xf7) {
          p += vlq();
        } else {
          const kind = status & 0xf0, ch = status & 0x0f, a = d.getUint8(p++);
          const b = kind === 0xc0 || kind === 0xd0 ? 0 : d.getUint8(p++);
          if (kind === 0x90 && b > 0) events.push({ tick, on: true, ch, note: a, vel: b });
          else if (kind === 0x80 || kind === 0x90) events.push({ tick, on: false, ch, note: a });
        }
      }
      p = end;
    }
    events.sort((x, y) => x.tick - y.tick);  // stable: same-tick order kept
    let tempo = 500000, lastTick = 0, seconds = 0;
    const open = new Map(), notes = [];
    for (const e of events) {
      seconds += (e.tick - lastTick) * tempo / 1e6 / division;
      lastTick = e.tick;
      if (e.tempo) { tempo = e.tempo; continue; }
      const key = e.ch * 128 + e.note;
      if (e.on) { open.set(key, { time: seconds, ch: e.ch, note: e.note, vel: e.vel }); continue; }
      const n = open.get(key);
      if (n) { n.dur = seconds - n.time; notes.push(n); open.delete(key); }
    }
    notes.sort((x, y) => x.time - y.time);
    return { notes, duration: seconds };
  }

  /* --- the synthesizer: one oscillator + ADSR per note, noise bursts for drums --- */
  const VOICES = {
    0: { wave: "triangle", gain: 0.30, a: 0.02, d: 0.12, s: 0.75, r: 0.10 },            // melody
    1: { wave: "sawtooth", gain: 0.045, a: 0.04, d: 0.40, s: 0.55, r: 0.25, cutoff: 1600 }, // chords
    2: { wave: "triangle", gain: 0.30, a: 0.01, d: 0.20, s: 0.60, r: 0.08 },            // bass
  };

  function noiseBuffer(ctx) {
    const buf = ctx.createBuffer(1, ctx.sampleRate, ctx.sampleRate), data = buf.getChannelData(0);
    for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
    return buf;
  }

  function tone(ctx, out, n, t) {
    const v = VOICES[n.ch] || VOICES[0], peak = v.gain * (n.vel / 127);
    const osc = ctx.createOscillator(), env = ctx.createGain();
    osc.type = v.wave;
    osc.frequency.value = 440 * Math.pow(2, (n.note - 69) / 12);
    const hold = Math.max(t + v.a + 0.01, t + n.dur);
    env.gain.setValueAtTime(0, t);
    env.gain.linearRampToValueAtTime(peak, t + v.a);
    env.gain.linearRampToValueAtTime(peak * v.s, Math.min(hold, t + v.a + v.d));
    env.gain.setValueAtTime(peak * v.s, hold);
    env.gain.linearRampToValueAtTime(0, hold + v.r);
    let node = osc;
    if (v.cutoff) { const f = ctx.createBiquadFilter(); f.frequency.value = v.cutoff; osc.connect(f); node = f; }
    node.connect(env).connect(out);
    osc.start(t);
    osc.stop(hold + v.r + 0.02);
  }

  function drum(ctx, out, noise, n, t) {
    const env = ctx.createGain(), level = n.vel / 127;
    env.connect(out);
    if (n.note === 35 || n.note === 36) {  // kick: a falling sine
      const osc = ctx.createOscillator();
      osc.frequency.setValueAtTime(140, t);
      osc.frequency.exponentialRampToValueAtTime(45, t + 0.12);
      env.gain.setValueAtTime(0.9 * level, t);
      env.gain.exponentialRampToValueAtTime(0.001, t + 0.25);
      osc.connect(env);
      osc.start(t);
      osc.stop(t + 0.3);
      return;
    }
    const len = n.note === 49 || n.note === 57 ? 1.2 : n.note === 38 || n.note === 40 ? 0.18 : 0.05;
    const src = ctx.createBufferSource(), hp = ctx.createBiquadFilter();
    src.buffer = noise;
    hp.type = "highpass";
    hp.frequency.value = len > 0.1 && len < 1 ? 1200 : 6000;
    env.gain.setValueAtTime((len < 0.1 ? 0.25 : 0.45) * level, t);
    env.gain.exponentialRampToValueAtTime(0.001, t + len);
    src.connect(hp).connect(env);
    src.start(t);
    src.stop(t + len + 0.02);
  }

  /* --- playback and highlighting --- */
  let current = null;

  function stop(state) {
    if (!current) return;
    const { ctx, timer, frame, button, syllables } = current;
    current = null;
    clearInterval(timer);
    cancelAnimationFrame(frame);
    ctx.close();
    button.classList.remove("bs-playing");
    button.textContent = button.dataset.karaokeLabel;
    button.dataset.karaokeState = state || "stopped";
    syllables.forEach((s) => s.classList.remove("bs-now", "bs-sung"));
  }

  async function play(button) {
    stop();
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();  // created inside the click so browsers allow sound
    const target = button.dataset.karaokeLyrics && document.getElementById(button.dataset.karaokeLyrics);
    const syllables = target ? Array.from(target.querySelectorAll(".syl[data-t]")) : [];
    const times = syllables.map((s) => parseFloat(s.dataset.t));
    button.dataset.karaokeLabel = button.dataset.karaokeLabel || button.textContent;
    button.dataset.karaokeState = "loading";
    const me = (current = { ctx, button, syllables, timer: 0, frame: 0 });
    let song;
    try {
      const response = await fetch(button.dataset.karaokePlay);
      if (!response.ok) throw new Error("HTTP " + response.status);
      song = parseMidi(await response.arrayBuffer());
    } catch (err) {
      button.dataset.karaokeState = "error";
      if (current === me) stop("error");
      console.error("karaoke:", err);
      return;
    }
    if (current !== me) return;  // stopped while loading
    const out = ctx.createDynamicsCompressor(), noise = noiseBuffer(ctx);
    out.connect(ctx.destination);
    const start = ctx.currentTime + 0.15;
    let next = 0, sung = -1;
    const schedule = () => {
      const horizon = ctx.currentTime - start + 0.6;
      for (; next < song.notes.length && song.notes[next].time < horizon; next++) {
        const n = song.notes[next];
        (n.ch === 9 ? drum(ctx, out, noise, n, start + n.time) : tone(ctx, out, n, start + n.time));
      }
      if (ctx.currentTime > start + song.duration + 0.5) stop("ended");
    };
    const highlight = () => {
      const now = ctx.currentTime - start;
      while (sung + 1 < times.length && times[sung + 1] <= now) {
        if (sung >= 0) syllables[sung].classList.replace("bs-now", "bs-sung");
        syllables[++sung].classList.add("bs-now");
      }
      if (current === me) me.frame = requestAnimationFrame(highlight);
    };
    schedule();
    me.timer = setInterval(schedule, 100);
    me.frame = requestAnimationFrame(highlight);
    button.classList.add("bs-playing");
    button.textContent = "Stop";
    button.dataset.karaokeState = "playing";
  }

  const api = { parseMidi, play, stop: () => stop("stopped") };
  globalThis.BillionSongsKaraoke = api;
  if (typeof document !== "undefined") {
    document.addEventListener("click", (event) => {
      const button = event.target.closest && event.target.closest("[data-karaoke-play]");
      if (!button) return;
      event.preventDefault();
      if (current && current.button === button) stop("stopped");
      else play(button);
    });
  }
})();
