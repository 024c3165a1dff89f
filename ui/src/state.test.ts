import { describe, expect, it } from "vitest";
import type { TransferInfo } from "./bindings";
import { library, location, pairing, peer, prompt, transfer } from "./fixtures";
import { byDevice, dismissPairing, empty, formatBytes, formatEta, markAnswering, online, percent, reduce, running, SHOWN_FINISHED, syncedAgo, transferWith, withOlder, type State } from "./state";

describe("reduce", () => {
  it("keeps each library's locations, their index progress, and which changed", () => {
    let s = reduce(empty, { type: "location", library: "l1", location: location("b", "Photos") });
    s = reduce(s, { type: "location", library: "l1", location: location("a", "Music") });
    s = reduce(s, { type: "location", library: "l1", location: location("b", "Photos", { online: false }) });
    expect(s.locations.l1.map((l) => [l.name, l.online])).toEqual([["Music", true], ["Photos", false]]);
    const progress = { library: "l1", location: "a", phase: "identifying", done: 5, total: 10, message: null };
    s = reduce(s, { type: "index", progress });
    expect(running(s, "a")).toEqual(progress);
    s = reduce(s, { type: "index", progress: { ...progress, phase: "done", done: 10 } });
    expect(running(s, "a")).toBeUndefined();
    s = reduce(s, { type: "contents_changed", library: "l1", location: "a" });
    s = reduce(s, { type: "contents_changed", library: "l1", location: "a" });
    expect(s.changed).toEqual({ a: 2 });
    s = reduce(s, { type: "location_removed", library: "l1", location: "a" });
    expect(s.locations.l1.map((l) => l.id)).toEqual(["b"]);
    expect(s.progress.a).toBeUndefined();
    s = reduce(s, { type: "library_removed", id: "l1" });
    expect(s.locations.l1).toBeUndefined();
  });

  it("adds, updates, sorts and removes peers from events", () => {
    let s = reduce(empty, { type: "peer_found", peer: peer("b", "zed") });
    s = reduce(s, { type: "peer_found", peer: peer("a", "amy") });
    expect(s.peers.map((p) => p.name)).toEqual(["amy", "zed"]);
    s = reduce(s, { type: "peer_changed", peer: { ...peer("b", "bob") } });
    expect(s.peers.map((p) => p.name)).toEqual(["amy", "bob"]);
    s = reduce(s, { type: "peer_lost", peer: peer("a", "amy", "lost"), reason: "left" });
    expect(s.peers.map((p) => p.id)).toEqual(["b"]);
  });

  it("closes a prompt everywhere when it is resolved, whoever answered", () => {
    let s = reduce(empty, { type: "spacedrop_prompt", prompt: prompt("t1") });
    s = reduce(s, { type: "spacedrop_prompt", prompt: prompt("t1") }); // duplicate delivery
    s = reduce(s, { type: "spacedrop_prompt", prompt: prompt("t2") });
    expect(s.prompts).toHaveLength(2);
    s = markAnswering(s, "t1");
    s = reduce(s, { type: "prompt_resolved", transfer: "t1", outcome: "accepted" });
    s = reduce(s, { type: "prompt_resolved", transfer: "t2", outcome: "timed_out" });
    expect(s.prompts).toEqual([]);
    expect(s.answering).toEqual([]);
  });

  it("keeps transfers newest first and updates them in place", () => {
    let s = reduce(empty, { type: "transfer", transfer: transfer("t1") });
    s = reduce(s, { type: "transfer", transfer: transfer("t2") });
    s = reduce(s, { type: "transfer", transfer: transfer("t1", { bytes_done: 900 }) });
    expect(s.transfers.map((t) => [t.id, t.bytes_done])).toEqual([["t2", 250], ["t1", 900]]);
    expect(transferWith(s, "b".repeat(52))?.id).toBe("t2");
    s = reduce(s, { type: "transfer", transfer: transfer("t2", { state: "done" } as Partial<TransferInfo>) });
    expect(transferWith(s, "b".repeat(52))?.id).toBe("t1");
  });

  it("holds a bounded list: new transfers push the oldest finished ones out, never an unfinished one", () => {
    const done = (id: string) => transfer(id, { state: "done" } as Partial<TransferInfo>);
    const old = Array.from({ length: SHOWN_FINISHED }, (_, i) => done(`d${i}`));
    let s: State = { ...empty, transfers: [transfer("live"), ...old, transfer("paused-long-ago", { state: "paused", by: "local" } as Partial<TransferInfo>)] };
    s = reduce(s, { type: "transfer", transfer: transfer("new") });
    expect(s.transfers).toHaveLength(SHOWN_FINISHED + 3);
    expect(s.transfersNext).toBeNull();
    // Once the new one has finished too, the next new one pushes the oldest finished out; the
    // list of older ones goes on after the last finished one kept.
    s = reduce(s, { type: "transfer", transfer: done("new") });
    s = reduce(s, { type: "transfer", transfer: transfer("newer") });
    expect(s.transfers).toHaveLength(SHOWN_FINISHED + 3);
    expect(s.transfers.map((t) => t.id)).not.toContain(`d${SHOWN_FINISHED - 1}`);
    expect(s.transfers.map((t) => t.id)).toContain("paused-long-ago");
    expect(s.transfersNext).toBe(`d${SHOWN_FINISHED - 2}`);
  });

  it("appends an older page, without the transfers already shown", () => {
    let s: State = { ...empty, transfers: [transfer("t3"), transfer("t1", { state: "interrupted", reason: "x" } as Partial<TransferInfo>)], transfersNext: "t3" };
    s = withOlder(s, [transfer("t2"), transfer("t1")], "t2");
    expect(s.transfers.map((t) => t.id)).toEqual(["t3", "t1", "t2"]);
    expect(s.transfersNext).toBe("t2");
    s = withOlder(s, [], null);
    expect(s.transfersNext).toBeNull();
  });
});

describe("library sync", () => {
  it("groups a library's locations by device, this device first, and keeps sync progress", () => {
    const mine = location("l1", "Pictures");
    const theirs = location("l2", "Music", { owner: "B", local: false, owner_name: "beta", owner_online: false, synced_at: 1_000 });
    const theirs2 = location("l3", "Films", { owner: "B", local: false, owner_name: "beta", synced_at: 5_000 });
    const other = location("l4", "Alpha docs", { owner: "A", local: false, owner_name: "alpha" });
    let s = reduce(empty, { type: "location", library: "L", location: theirs });
    s = reduce(s, { type: "location", library: "L", location: other });
    s = reduce(s, { type: "location", library: "L", location: mine });
    s = reduce(s, { type: "location", library: "L", location: theirs2 });
    const groups = byDevice(s.locations.L);
    expect(groups.map((g) => [g.name, g.locations.map((l) => l.name)])).toEqual([
      ["This device", ["Pictures"]],
      ["alpha", ["Alpha docs"]],
      ["beta", ["Films", "Music"]],
    ]);
    expect(groups[2].syncedAt).toBe(5_000);
    expect(syncedAgo(5_000, 5_000 + 125_000)).toBe("synced 2 min ago");
    s = reduce(s, { type: "sync", progress: { library: "L", member: "B", state: "pulling", received: 10, total: 40, message: null } });
    expect(s.sync["L/B"].received).toBe(10);
  });
});

describe("formatting", () => {
  it("reads like a person would say it", () => {
    expect(formatBytes(999)).toBe("999 B");
    expect(formatBytes(2_500_000)).toBe("2.5 MB");
    expect(formatBytes(3_210_000_000)).toBe("3.21 GB");
    expect(formatEta(null)).toBe("—");
    expect(formatEta(75)).toBe("1m 15s");
    expect(formatEta(7300)).toBe("2h 1m");
    expect(percent(transfer("x"))).toBe(25);
  });

  it("keeps libraries sorted, replaces them on change and drops removed ones", () => {
    let s = reduce(empty, { type: "library", library: library("2", "zoo", [["m", "me", "member"]]) });
    s = reduce(s, { type: "library", library: library("1", "attic", [["m", "me", "member"]]) });
    s = reduce(s, { type: "library", library: library("2", "Birds", [["m", "me", "member"], ["b", "beta", "member"]]) });
    expect(s.libraries.map((l) => l.name)).toEqual(["attic", "Birds"]);
    s = reduce(s, { type: "library_removed", id: "1" });
    expect(s.libraries.map((l) => l.id)).toEqual(["2"]);
  });

  it("updates a pairing in place, keeps an ended one until dismissed, and knows who is online", () => {
    let s = reduce(empty, { type: "pairing", pairing: pairing("p1") });
    s = reduce(s, { type: "pairing", pairing: pairing("p2") });
    s = reduce(s, { type: "pairing", pairing: pairing("p1", { state: "done" } as never) });
    expect(s.pairings.map((p) => [p.id, p.state])).toEqual([["p1", "done"], ["p2", "confirm"]]);
    s = dismissPairing(s, "p1");
    expect(s.pairings.map((p) => p.id)).toEqual(["p2"]);
    s = reduce(s, { type: "peer_found", peer: peer("b", "beta") });
    s = reduce(s, { type: "peer_found", peer: peer("c", "gamma", "discovered") });
    expect([online(s, "b"), online(s, "c"), online(s, "x")]).toEqual([true, false, false]);
  });
});
