// The live seat map of one screening over the WebSocket, protocol v1 (docs/protocol.md).
//
// Keeps the highest `seq` seen: a delta or status at or below it is a duplicate and ignored;
// a delta that skips a number means something was missed, so the client asks to `resume` from
// its seq (the server replays exactly the missing changes, or sends a snapshot). After a
// dropped connection it reconnects by itself with exponential back-off (with jitter) and
// `?since=<seq>`, so the map catches up without a reload. A heartbeat with a higher seq
// than ours also triggers a resume; silence for too long counts as a dead connection.

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const SILENCE_MS = 50_000; // the server sends a heartbeat after 20 s of quiet
const NO_RETRY = new Set([1009, 4003, 4004]);

export class LiveMap {
  /**
   * handlers: onSnapshot(map), onChange(changes) with [{seat, state} | {area, remaining}],
   * onStatus(status), onViewers(n), onConnection(state, detail)
   * where state is "connecting" | "live" | "reconnecting" | "offline" | "closed".
   */
  constructor(screeningId, handlers = {}) {
    this.screeningId = screeningId;
    this.handlers = handlers;
    this.seq = 0;
    this.seats = new Map(); // label -> held | sold | blocked (free seats are absent)
    this.ga = new Map(); // area -> remaining
    this.status = null;
    this.viewers = 0;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.watchdog = null;
    this.stopped = false;
    this.resuming = false;
    this.connections = 0;
    this.connection = "connecting";
    this._online = () => this.retryNow();
    this._offline = () => this._setConnection("offline", { reason: "This device is offline." });
    window.addEventListener("online", this._online);
    window.addEventListener("offline", this._offline);
  }

  start() {
    this.stopped = false;
    this._connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    window.removeEventListener("online", this._online);
    window.removeEventListener("offline", this._offline);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
  }

  /** Reconnect at once (the device came back online, or the user asked). */
  retryNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this._connect();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // batch=1: when this tab falls behind, the server may pack queued messages into one frame.
    const since = this.seq > 0 ? `&since=${this.seq}` : "";
    return `${scheme}://${location.host}/ws/screenings/${this.screeningId}?batch=1${since}`;
  }

  _setConnection(state, detail = {}) {
    if (state === "live" && this.connection !== "live") performance.mark("seatmap:live");
    this.connection = state;
    this.handlers.onConnection?.(state, detail);
  }

  _connect() {
    clearTimeout(this.timer);
    this.connections += 1;
    this._setConnection(this.seq > 0 ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this._scheduleReconnect(1006);
      return;
    }
    this.ws = ws;
    // A pong proves the server is there even when a resume had nothing to replay.
    ws.onopen = () => ws.send(JSON.stringify({ type: "ping", ref: "hello" }));
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.watchdog);
      this._scheduleReconnect(event.code);
    };
    ws.onerror = () => {}; // onclose follows and decides
  }

  _scheduleReconnect(code) {
    if (this.stopped) return;
    if (NO_RETRY.has(code)) {
      const reason =
        code === 4004 ? "This screening does not exist." : code === 4003 ? "This page may not connect." : "";
      this._setConnection("closed", { code, reason });
      return;
    }
    // 4008: we were told to slow down; wait at least the longest step.
    const base = code === 4008 ? BACKOFF_MS[BACKOFF_MS.length - 1] : BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    const state = navigator.onLine === false ? "offline" : "reconnecting";
    this._setConnection(state, { delay, attempt: this.attempt, code, retryAt: Date.now() + delay });
    this.timer = setTimeout(() => this._connect(), delay);
  }

  _alive() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      // No message, not even a heartbeat: the connection is dead without having said so.
      if (this.ws) this.ws.close(4000, "silent");
    }, SILENCE_MS);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  _resume() {
    if (this.resuming) return;
    this.resuming = true;
    this.send({ type: "resume", seq: this.seq });
  }

  _receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    this._alive();
    this._handle(message);
  }

  _handle(message) {
    switch (message.type) {
      case "batch":
        for (const inner of message.messages) this._handle(inner);
        break;
      case "snapshot":
        this._snapshot(message);
        break;
      case "delta":
        this._delta(message);
        break;
      case "status":
        if (message.seq <= this.seq) return;
        if (message.seq > this.seq + 1) return this._resume();
        this.seq = message.seq;
        this.status = message.status;
        this.handlers.onStatus?.(message.status);
        break;
      case "presence":
        this.viewers = message.viewers;
        this.handlers.onViewers?.(message.viewers);
        break;
      case "heartbeat":
        if (message.seq > this.seq) this._resume();
        break;
      case "pong":
        this.attempt = 0;
        if (this.connection !== "live") this._setConnection("live");
        break;
      case "error":
        this.handlers.onError?.(message);
        break;
      default:
        break; // result: seat commands go over REST in this client
    }
  }

  _healthy() {
    this.attempt = 0;
    this.resuming = false;
    if (this.connection !== "live") this._setConnection("live");
  }

  _snapshot(message) {
    this.seq = message.seq;
    this.seats = new Map(Object.entries(message.seats || {}));
    this.ga = new Map(Object.entries(message.ga || {}));
    const statusChanged = this.status !== message.status;
    this.status = message.status;
    this.viewers = message.viewers;
    this._healthy();
    this.handlers.onSnapshot?.(this);
    this.handlers.onViewers?.(message.viewers);
    if (statusChanged) this.handlers.onStatus?.(message.status);
  }

  _delta(message) {
    if (message.seq <= this.seq) return; // seen already
    if (this.seq > 0 && message.seq > this.seq + 1) {
      this._resume(); // a gap: get exactly what we missed first
      return;
    }
    this.seq = message.seq;
    for (const change of message.changes) {
      if (change.seat !== undefined) {
        if (change.state === "free") this.seats.delete(change.seat);
        else this.seats.set(change.seat, change.state);
      } else if (change.area !== undefined) {
        this.ga.set(change.area, change.remaining);
      }
    }
    this._healthy();
    this.handlers.onChange?.(message.changes, message);
  }

  /**
   * The seat state a REST read gave (GET /api/screenings/{id}: seats, seq, ga), so the map is
   * drawn before the socket's snapshot comes. Taken only when newer than what the socket said;
   * the socket's later snapshot or deltas take over from it (a delta it already covers is
   * ignored by its seq, as any duplicate).
   */
  seed({ seats, seq, ga = [], status }) {
    if (seq <= this.seq && this.status !== null) return false;
    this.seq = seq;
    this.seats = new Map(Object.entries(seats || {}));
    this.ga = new Map(ga.map((area) => [area.name, area.remaining]));
    this.status = status;
    return true;
  }

  stateOf(label) {
    return this.seats.get(label) || "free";
  }
}
