// The UI's state: one snapshot at start, then every change from the node's event stream.
// Pure functions only, so the rules are unit-tested without a backend.

import type { DownloadInfo, Event, IndexProgress, LibraryInfo, LocalSendDevice, LocationInfo, Me, PairingInfo, PeerSnapshot, Prompt, Settings, Snapshot, SyncProgress, TransferInfo } from "./bindings";

export type State = {
  me: Me | null;
  peers: PeerSnapshot[];
  /** Newest first: every unfinished transfer, the newest finished ones, and older pages the
   * user asked for. */
  transfers: TransferInfo[];
  /** Older finished transfers follow: the node lists them `before` this id (null: none). */
  transfersNext: string | null;
  prompts: Prompt[];
  settings: Settings | null;
  /** Prompt ids this window already answered (the answer is on its way). */
  answering: string[];
  libraries: LibraryInfo[];
  /** Pairings in progress, and ended ones until the user closes them. */
  pairings: PairingInfo[];
  /** Each library's locations, by library id. */
  locations: Record<string, LocationInfo[]>;
  /** The latest index job report, by location id. */
  progress: Record<string, IndexProgress>;
  /** Bumped, by location id, whenever its entries change: open listings refetch. */
  changed: Record<string, number>;
  /** The latest sync pull report, by `library/member`. */
  sync: Record<string, SyncProgress>;
  /** LocalSend devices heard on the LAN (not Ferry peers: no verified identity). */
  localsend: LocalSendDevice[];
  /** Downloads of members' files (*Save to this device*), oldest first. */
  downloads: DownloadInfo[];
  /** This app is a front end of a node started elsewhere (`ferry node`). */
  attached: boolean;
};

export const empty: State = { me: null, peers: [], transfers: [], transfersNext: null, prompts: [], settings: null, answering: [], libraries: [], pairings: [], locations: {}, progress: {}, changed: {}, sync: {}, localsend: [], downloads: [], attached: false };

export function fromSnapshot(s: Snapshot): State {
  return {
    me: s.me, peers: sortPeers(s.peers), transfers: s.transfers, transfersNext: s.transfers_next ?? null, prompts: s.prompts, settings: s.settings, answering: [],
    libraries: sortLibraries(s.libraries ?? []), pairings: s.pairings ?? [],
    locations: Object.fromEntries((s.locations ?? []).map((l) => [l.library, sortLocations(l.locations)])), progress: {}, changed: {}, sync: {},
    localsend: s.localsend_devices ?? [],
    downloads: s.downloads ?? [],
    attached: s.attached ?? false,
  };
}

function sortLibraries(libs: LibraryInfo[]): LibraryInfo[] {
  return [...libs].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

/** This device's locations first, then each member's, by name. */
function sortLocations(locs: LocationInfo[]): LocationInfo[] {
  const device = (l: LocationInfo) => (l.local ? "" : `${l.owner_name ?? ""}\u0000${l.owner}`);
  return [...locs].sort((a, b) => device(a).localeCompare(device(b)) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

export type DeviceGroup = { owner: string; name: string; local: boolean; locations: LocationInfo[]; syncedAt: number | null };

/** A library's locations grouped by the device whose disk they are on, this device first. */
export function byDevice(locs: LocationInfo[]): DeviceGroup[] {
  const groups: DeviceGroup[] = [];
  for (const l of sortLocations(locs)) {
    let g = groups.find((x) => x.owner === l.owner);
    if (!g) {
      g = { owner: l.owner, name: l.local ? "This device" : l.owner_name ?? "Another member", local: l.local, locations: [], syncedAt: null };
      groups.push(g);
    }
    g.locations.push(l);
    if (l.synced_at != null) g.syncedAt = Math.max(g.syncedAt ?? 0, l.synced_at);
  }
  return groups;
}

/** "synced 5 min ago" for a unix-ms time, from `now`. */
export function syncedAgo(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return "synced just now";
  if (s < 3600) return `synced ${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `synced ${Math.floor(s / 3600)} h ago`;
  return `synced ${Math.floor(s / 86400)} d ago`;
}

function without<T>(r: Record<string, T>, key: string): Record<string, T> {
  const { [key]: _, ...rest } = r;
  return rest;
}

function sortPeers(peers: PeerSnapshot[]): PeerSnapshot[] {
  return [...peers].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

function upsertPeer(peers: PeerSnapshot[], p: PeerSnapshot): PeerSnapshot[] {
  return sortPeers([...peers.filter((x) => x.id !== p.id), p]);
}

/** Newest first; a transfer keeps its place when it changes. */
/** Finished transfers the list holds at most while the app runs: new ones push the oldest out
 * (the node keeps them as its history setting says; "Show older" lists them again). */
export const SHOWN_FINISHED = 1000;

function upsertTransfer(state: State, t: TransferInfo): State {
  const list = state.transfers;
  const i = list.findIndex((x) => x.id === t.id);
  if (i !== -1) {
    const next = [...list];
    next[i] = t;
    return { ...state, transfers: next };
  }
  const next = [t, ...list];
  let ended = 0;
  let lastKept: string | null = null;
  const kept = next.filter((x) => {
    if (!finished(x)) return true;
    ended += 1;
    if (ended > SHOWN_FINISHED) return false;
    lastKept = x.id;
    return true;
  });
  if (kept.length === next.length) return { ...state, transfers: next };
  // What went is listed again after the last finished one kept.
  return { ...state, transfers: kept, transfersNext: lastKept };
}

/** An older page of transfers the user asked for: the ones not shown yet go at the end. */
export function withOlder(state: State, page: TransferInfo[], next: string | null): State {
  const shown = new Set(state.transfers.map((t) => t.id));
  return { ...state, transfers: [...state.transfers, ...page.filter((t) => !shown.has(t.id))], transfersNext: next };
}

export function reduce(state: State, e: Event): State {
  switch (e.type) {
    case "node_started":
      return { ...state, me: state.me && { ...state.me, id: e.id, short_id: e.short_id, name: e.name, listen: e.listen, discovery: e.discovery } };
    case "peer_found":
    case "peer_changed":
      return { ...state, peers: upsertPeer(state.peers, e.peer) };
    case "peer_lost":
      return { ...state, peers: state.peers.filter((p) => p.id !== e.peer.id) };
    case "spacedrop_prompt":
      if (state.prompts.some((p) => p.transfer === e.prompt.transfer)) return state;
      return { ...state, prompts: [...state.prompts, e.prompt] };
    case "prompt_resolved":
      // Answered here, in another window, by the CLI, or expired: it closes everywhere.
      return {
        ...state,
        prompts: state.prompts.filter((p) => p.transfer !== e.transfer),
        answering: state.answering.filter((id) => id !== e.transfer),
      };
    case "transfer":
      return upsertTransfer(state, e.transfer);
    case "library":
      return { ...state, libraries: sortLibraries([...state.libraries.filter((l) => l.id !== e.library.id), e.library]) };
    case "library_removed":
      return { ...state, libraries: state.libraries.filter((l) => l.id !== e.id), locations: without(state.locations, e.id) };
    case "pairing": {
      // A pairing keeps its place; a new one queues behind those already shown.
      const i = state.pairings.findIndex((p) => p.id === e.pairing.id);
      const pairings = i === -1 ? [...state.pairings, e.pairing] : state.pairings.map((p, j) => (j === i ? e.pairing : p));
      return { ...state, pairings };
    }
    case "node_stopped":
      return { ...state, peers: [] };
    case "location": {
      const others = (state.locations[e.library] ?? []).filter((l) => l.id !== e.location.id);
      return { ...state, locations: { ...state.locations, [e.library]: sortLocations([...others, e.location]) } };
    }
    case "location_removed":
      return {
        ...state,
        locations: { ...state.locations, [e.library]: (state.locations[e.library] ?? []).filter((l) => l.id !== e.location) },
        progress: without(state.progress, e.location),
      };
    case "index":
      return { ...state, progress: { ...state.progress, [e.progress.location]: e.progress } };
    case "contents_changed":
      return { ...state, changed: { ...state.changed, [e.location]: (state.changed[e.location] ?? 0) + 1 } };
    case "localsend_devices":
      return { ...state, localsend: e.devices };
    case "sync":
      return { ...state, sync: { ...state.sync, [`${e.progress.library}/${e.progress.member}`]: e.progress } };
    case "download": {
      const others = state.downloads.filter((d) => d.id !== e.download.id);
      return { ...state, downloads: [...others, e.download].sort((a, b) => a.id.localeCompare(b.id)) };
    }
  }
}

export function dismissPairing(state: State, id: string): State {
  return { ...state, pairings: state.pairings.filter((p) => p.id !== id) };
}

export function pairingOver(p: PairingInfo): boolean {
  return p.state === "done" || p.state === "failed";
}

/** A member is online when its node is connected here (this device always is). */
export function online(state: State, node: string): boolean {
  return state.me?.id === node || state.peers.some((p) => p.id === node && p.state === "connected");
}

export function markAnswering(state: State, transfer: string): State {
  return { ...state, answering: [...state.answering, transfer] };
}

export function finished(t: TransferInfo): boolean {
  return t.state === "done" || t.state === "failed" || t.state === "rejected" || t.state === "cancelled";
}

export function active(t: TransferInfo): boolean {
  return !finished(t);
}

/** The live transfer with a peer, if any (what its card shows). */
/** The active send to `peer`: a Ferry peer's id, or a LocalSend device's certificate fingerprint. */
export function transferWith(state: State, peer: string): TransferInfo | undefined {
  const to = (t: TransferInfo) => t.peer === peer || (t.via.kind === "localsend" && t.via.fingerprint === peer);
  return state.transfers.find((t) => to(t) && t.direction === "send" && active(t));
}

export function formatBytes(value: number | null | undefined): string {
  const n = value ?? 0;
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** `12,345 files`, `1 file` (grouped by the user's locale). */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** A library's locations in one line: `2 locations · 10,006 files · 3.1 MB`. */
export function locationsSummary(locs: LocationInfo[]): string {
  const files = locs.reduce((n, l) => n + l.files, 0);
  const bytes = locs.reduce((n, l) => n + l.bytes, 0);
  return `${count(locs.length, "location")} · ${count(files, "file")} · ${formatBytes(bytes)}`;
}

/** A running index job's report (none once it is done or failed). */
export function running(state: State, location: string): IndexProgress | undefined {
  const p = state.progress[location];
  return p && p.phase !== "done" && p.phase !== "failed" ? p : undefined;
}

export function formatEta(secs: number | null | undefined): string {
  if (secs == null || !isFinite(secs)) return "—";
  const s = Math.round(secs);
  return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

export function percent(t: TransferInfo): number {
  return t.bytes_total > 0 ? Math.min(100, (t.bytes_done * 100) / t.bytes_total) : t.state === "done" ? 100 : 0;
}
