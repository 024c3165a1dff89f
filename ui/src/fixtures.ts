// Test data shaped like the backend's.
import type { EntryInfo, LibraryInfo, LocationInfo, PairingInfo, PeerSnapshot, Prompt, TransferInfo } from "./bindings";

export const peer = (id: string, name: string, state: PeerSnapshot["state"] = "connected"): PeerSnapshot => ({
  id, short_id: id.slice(0, 12), name, os: "linux", version: "0.1.0", addrs: ["10.0.0.2:7000"], state, rtt_ms: 0.4, discovered: true,
});

export const prompt = (transfer: string, over: Partial<Prompt> = {}): Prompt => ({
  transfer, peer: "p".repeat(52), peer_short: "pppppppppppp", peer_name: "alpha", via: { kind: "ferry" }, files: 3, bytes: 2_500_000, first_names: ["photos/"],
  first_files: ["photos/a.jpg", "photos/b.jpg", "photos/c.jpg"], folders: 1, expires_in_ms: 60_000,
  ...over,
});

export const transfer = (id: string, over: Partial<TransferInfo> = {}): TransferInfo => ({
  id, direction: "send", peer: "b".repeat(52), peer_name: "beta", via: { kind: "ferry" }, state: "transferring", files_total: 2, files_done: 0,
  bytes_total: 1000, bytes_done: 250, bytes_resumed: 0, speed_bps: 1e6, eta_secs: 3, current: null, dest: null, renamed: [], renamed_count: 0, failed: [], failed_count: 0,
  ...over,
} as TransferInfo);


export const library = (id: string, name: string, members: [string, string, "member" | "removed"][], over: Partial<LibraryInfo> = {}): LibraryInfo => ({
  id, name, created: 1_700_000_000, removed: false, pending: false,
  members: members.map(([node, mname, state], i) => ({
    node, short_id: node.slice(0, 12), name: mname, state, me: i === 0, added: 1_700_000_000, last_seen: i === 0 ? null : 1_700_000_000,
  })),
  ...over,
});

export const pairing = (id: string, over: Partial<PairingInfo> = {}): PairingInfo => ({
  id, role: "responder", peer: "a".repeat(52), peer_short: "aaaaaaaaaaaa", peer_name: "alpha", library: "l".repeat(32),
  library_name: "Family", code: "123 456", state: "confirm", expires_in_ms: 120_000,
  ...over,
} as PairingInfo);

export const location = (id: string, name: string, over: Partial<LocationInfo> = {}): LocationInfo => ({
  id, name, path: `/home/me/${name}`, state: "done", online: true, files: 10_000, folders: 1, bytes: 41_000_000, identified: 10_000,
  errors: 0, last_scan: 1_700_000_000_000, error: null, previews: true,
  owner: "me", local: true, owner_name: "this laptop", owner_online: true, synced_at: null,
  ...over,
});

/** A folder of `n` entries (every third a picture with a thumbnail), listed like the backend. */
export const folder = (n: number, loc = "loc1"): EntryInfo[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `e${String(i).padStart(31, "0")}`, location: loc, path: `photo${i}.jpg`, name: `photo${i}.jpg`, kind: "file" as const,
    size: 4_000 + i, modified: 1_700_000_000_000, cas: i % 3 === 0 ? `c${i}`.padEnd(64, "0") : null, thumb: i % 3 === 0, error: null,
  }));
