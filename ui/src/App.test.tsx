import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { App } from "./App";
import type { Api } from "./api";
import type { Event, Snapshot, TransferInfo } from "./bindings";
import { folder, library, location, pairing, peer, prompt, transfer } from "./fixtures";

/** A fake backend: records calls, and lets a test push node events. */
/** A double click as the browser reports it: two clicks, the second counted 2. */
function doubleClick(el: Element) {
  fireEvent.click(el, { detail: 1 });
  fireEvent.click(el, { detail: 2 });
}

function fakeApi(snapshot: Partial<Snapshot> = {}, entries = folder(0), older: TransferInfo[] = []) {
  let emit: (e: Event) => void = () => {};
  const calls: unknown[][] = [];
  const granted: string[] = [];
  const rec = (name: string) => (...args: unknown[]) => {
    calls.push([name, ...args]);
    return Promise.resolve(null);
  };
  const api = {
    snapshot: () =>
      Promise.resolve({
        me: { id: "m".repeat(52), short_id: "mmmmmmmmmmmm", name: "my-laptop", listen: "0.0.0.0:7000", discovery: true },
        peers: [], transfers: [], prompts: [], libraries: [], pairings: [], locations: [],
        settings: { name: "", download_dir: "/home/me/Downloads", discovery: true, interfaces: [], localsend: true, localsend_pin: "", preview_sync: true, preview_cap_mib: 2048, theme: "system" },
        ...snapshot,
      } as Snapshot),
    sendPaths: rec("sendPaths"), pickAndSend: rec("pickAndSend"), resendWithPin: rec("resendWithPin"), answer: rec("answer"), pause: rec("pause"), resume: rec("resume"),
    cancel: rec("cancel"), connect: rec("connect"), showInFolder: rec("showInFolder"), pickFolder: rec("pickFolder"),
    saveSettings: rec("saveSettings"), openWindow: rec("openWindow"),
    createLibrary: rec("createLibrary"), renameLibrary: rec("renameLibrary"), deleteLibrary: rec("deleteLibrary"),
    removeMember: rec("removeMember"), pair: rec("pair"), answerPairing: rec("answerPairing"),
    addLocation: rec("addLocation"), setLocationPreviews: rec("setLocationPreviews"), removeLocation: rec("removeLocation"), rescanLocation: rec("rescanLocation"), openEntry: rec("openEntry"),
    listEntries: (...args: unknown[]) => {
      calls.push(["listEntries", ...args]);
      const [, , , offset, limit] = args as [string, string, string, number, number];
      return Promise.resolve({ total: entries.length, entries: entries.slice(offset, offset + limit) });
    },
    entryDetails: (_lib: string, id: string) => Promise.resolve({ entry: entries.find((e) => e.id === id), path: `/home/me/Photos/${id}` }),
    contentUrl: (kind: string, lib: string, id: string) => `ferry://localhost/${kind}/${lib}/${id}`,
    mediaUrl: (lib: string, id: string) => Promise.resolve(`http://127.0.0.1:9/t/file/${lib}/${id}`),
    control: (command: { cmd: string; capability?: string; command?: { cmd: string } }) => {
      calls.push(["control", command]);
      const inner = command.cmd === "remote" ? command.command! : command;
      const replies: Record<string, unknown> = {
        grants: { reply: "grants", grants: granted.map((c) => ({ node: "b".repeat(52), name: "beta", capability: c, granted: 1 })), log: [{ at: 1_700_000_000, node: "b".repeat(52), name: "beta", command: "add_location", outcome: "refused: this node has not granted you \"manage\" (ferry grant on it)" }] },
        status: { reply: "status", status: { id: "b".repeat(52), short_id: "bbbbbbbbbbbb", name: "beta-desktop", listen: "", discovery: true, version: "0.1.0" } },
        locations: { reply: "locations", locations: [location("rl1", "Music", { path: "/srv/music" })] },
        transfers: { reply: "transfers", transfers: older, next: null },
      };
      if (command.cmd === "grant") granted.push(command.capability!);
      if (command.cmd === "revoke") granted.splice(granted.indexOf(command.capability!), 1);
      if ((command.cmd === "remote" && inner.cmd === "transfers") || inner.cmd === "rescan_location") {
        return Promise.reject(new Error(`refused: this node has not granted you "${inner.cmd === "transfers" ? "send" : "manage"}" (ferry grant on it)`));
      }
      return Promise.resolve(replies[inner.cmd] ?? { reply: "grants", grants: [], log: [] });
    },
    saveEntry: rec("saveEntry"), pauseDownload: rec("pauseDownload"), resumeDownload: rec("resumeDownload"), cancelDownload: rec("cancelDownload"),
    onEvent: (f: (e: Event) => void) => { emit = f; return Promise.resolve(() => {}); },
    onDrop: () => Promise.reject(new Error("not in Tauri")),
  } as unknown as Api;
  return { api, calls, emit: (e: Event) => act(() => emit(e)) };
}

afterEach(cleanup);

describe("App", () => {
  it("says who it is and explains an empty neighbourhood", async () => {
    const { api } = fakeApi();
    render(<App api={api} />);
    expect(await screen.findByText("my-laptop")).toBeTruthy();
    expect(screen.getByText(/No one nearby yet — is Ferry open on the other device\?/)).toBeTruthy();
    expect(screen.getByText(/Nothing sent or received yet/)).toBeTruthy();
  });

  it("lists a download of a member's file with its progress, pause, resume and cancel", async () => {
    const { api, calls, emit } = fakeApi();
    render(<App api={api} />);
    await screen.findByText("my-laptop");
    const d = {
      id: "d1", library: "l1", entry: "e1", name: "film.mkv", from: "beta", dest: "/home/me/Downloads",
      progress: { bytes: 25, total_bytes: 100, files: 0, total_files: 1, current: "film.mkv" },
    };
    emit({ type: "download", download: { ...d, state: "running" } });
    const row = await screen.findByLabelText("Saving film.mkv from beta");
    expect(row.textContent).toContain("Saving to this device");
    expect(row.textContent).toContain("25.0%");
    fireEvent.click(screen.getByText("Pause"));
    expect(calls).toContainEqual(["pauseDownload", "d1"]);
    emit({ type: "download", download: { ...d, state: "paused" } });
    fireEvent.click(await screen.findByText("Resume"));
    expect(calls).toContainEqual(["resumeDownload", "d1"]);
    fireEvent.click(screen.getByText("Cancel"));
    expect(calls).toContainEqual(["cancelDownload", "d1"]);
    emit({ type: "download", download: { ...d, progress: { ...d.progress, bytes: 100, files: 1 }, state: "done", path: "/home/me/Downloads/film.mkv", resumed: 0 } });
    expect((await screen.findByLabelText("Saving film.mkv from beta")).textContent).toContain("Done · verified");
    expect(screen.getAllByLabelText("Saving film.mkv from beta")).toHaveLength(1);
  });

  it("shows peers as they come and go, and sends to one", async () => {
    const { api, calls, emit } = fakeApi();
    render(<App api={api} />);
    await screen.findByText("my-laptop");
    emit({ type: "peer_found", peer: peer("b".repeat(52), "beta") });
    expect(await screen.findByLabelText("Peer beta")).toBeTruthy();
    fireEvent.click(screen.getByText("Send files"));
    expect(calls).toContainEqual(["pickAndSend", "b".repeat(52), false]);
    emit({ type: "peer_lost", peer: peer("b".repeat(52), "beta", "lost"), reason: "left" });
    expect(screen.queryByLabelText("Peer beta")).toBeNull();
  });

  it("asks, answers once, and closes the prompt when it is resolved elsewhere", async () => {
    const { api, calls, emit } = fakeApi({ prompts: [prompt("t1")] });
    render(<App api={api} />);
    expect(await screen.findByRole("dialog")).toBeTruthy();
    expect(screen.getByText(/alpha wants to send you 3 files/)).toBeTruthy();
    expect(screen.getByText("2.5 MB")).toBeTruthy();
    // A folder's first files, and how many folders.
    expect(screen.getByText("in 1 folder:")).toBeTruthy();
    expect(screen.getByText("photos/a.jpg")).toBeTruthy();
    fireEvent.click(screen.getByText("Accept"));
    expect(calls).toContainEqual(["answer", "t1", true, false]);
    expect(screen.queryByRole("dialog")).toBeNull();
    // A second prompt, answered in another window: this one closes it too.
    emit({ type: "spacedrop_prompt", prompt: prompt("t2") });
    expect(await screen.findByRole("dialog")).toBeTruthy();
    emit({ type: "prompt_resolved", transfer: "t2", outcome: "accepted" });
    expect(screen.queryByRole("dialog")).toBeNull();
  });

  it("marks a LocalSend sender as not a Ferry-verified device, and offers no pause for its transfer", async () => {
    const via = { kind: "localsend" as const, fingerprint: "AB".repeat(32), verified: false, address: "10.0.0.9" };
    const { api, emit } = fakeApi({ prompts: [prompt("t1", { peer_name: "Pixel 8", peer_short: "abababababab", via })] });
    render(<App api={api} />);
    const dialog = await screen.findByRole("dialog");
    expect(dialog.textContent).toContain("LocalSend");
    expect(dialog.textContent).toContain("claimed, not shown");
    expect(dialog.textContent).toContain("not a paired or Ferry-verified device");
    expect(dialog.textContent).not.toContain("Verified device");
    emit({ type: "prompt_resolved", transfer: "t1", outcome: "accepted" });
    emit({ type: "transfer", transfer: transfer("t1", { direction: "receive", peer_name: "Pixel 8", via }) });
    const row = await screen.findByLabelText("Transfer from Pixel 8");
    expect(row.textContent).toContain("LocalSend");
    expect(row.textContent).toContain("Cancel");
    expect(row.textContent).not.toContain("Pause");
  });

  it("lists LocalSend devices beside Ferry peers, and sends to one by its certificate fingerprint", async () => {
    const { api, calls, emit } = fakeApi();
    render(<App api={api} />);
    await screen.findByText("my-laptop");
    const fp = "CD".repeat(32);
    const device = { alias: "Pixel 8", fingerprint: fp, short: "cdcdcdcdcdcd", verified: true, address: "10.0.0.9:53317", device_type: "mobile", device_model: "Pixel" };
    emit({ type: "localsend_devices", devices: [device] });
    const card = await screen.findByLabelText("LocalSend device Pixel 8");
    expect(card.textContent).toContain("LocalSend");
    expect(card.textContent).not.toContain("Pair");
    fireEvent.click(within(card).getByText("Send files"));
    expect(calls).toContainEqual(["pickAndSend", fp, false]);
    emit({ type: "transfer", transfer: transfer("t9", { peer_name: "Pixel 8", via: { kind: "localsend", fingerprint: fp, verified: true, address: "10.0.0.9" } }) });
    expect((await screen.findByLabelText("LocalSend device Pixel 8")).textContent).toContain("sending · 25%");
    emit({ type: "localsend_devices", devices: [] });
    expect(screen.queryByLabelText("LocalSend device Pixel 8")).toBeNull();
  });

  it("keeps what events said while the snapshot was on its way", async () => {
    const { api, emit } = fakeApi();
    const answer = api.snapshot();
    let release: () => void = () => {};
    const held = new Promise<void>((r) => { release = r; });
    let asked = false;
    (api as { snapshot: unknown }).snapshot = () => {
      asked = true;
      return held.then(() => answer);
    };
    render(<App api={api} />);
    await waitFor(() => expect(asked).toBe(true));
    // The snapshot was taken before this device was heard, and is answered after.
    const device = { alias: "Pixel 8", fingerprint: "CD".repeat(32), short: "cdcdcdcdcdcd", verified: true, address: "10.0.0.9:53317", device_type: "mobile", device_model: null };
    emit({ type: "localsend_devices", devices: [device] });
    release();
    await screen.findByText("my-laptop");
    expect(screen.getByLabelText("LocalSend device Pixel 8")).toBeTruthy();
  });

  it("lists older transfers a page at a time when asked", async () => {
    const newest = transfer("t9", { state: "done" } as Partial<TransferInfo>);
    const older = [transfer("t8", { state: "done", peer_name: "gamma" } as Partial<TransferInfo>), newest];
    const { api, calls } = fakeApi({ transfers: [newest], transfers_next: "t9" }, folder(0), older);
    render(<App api={api} />);
    await screen.findByLabelText("Transfer to beta");
    fireEvent.click(screen.getByText("Show older transfers"));
    expect(await screen.findByLabelText("Transfer to gamma")).toBeTruthy();
    expect(calls).toContainEqual(["control", { cmd: "transfers", limit: 100, before: "t9" }]);
    // Once and in order; no more to show.
    expect(screen.getAllByLabelText(/^Transfer to/).map((r) => r.getAttribute("data-transfer"))).toEqual(["t9", "t8"]);
    expect(screen.queryByText("Show older transfers")).toBeNull();
  });

  it("asks for a LocalSend receiver's PIN and sends again with it", async () => {
    const via = { kind: "localsend" as const, fingerprint: "EF".repeat(32), verified: true, address: "10.0.0.9" };
    const refused = transfer("t5", { peer_name: "Locked phone", via, state: "rejected", reason: "the receiver requires a PIN" } as Partial<TransferInfo>);
    const { api, calls } = fakeApi({ transfers: [refused] });
    render(<App api={api} />);
    const row = await screen.findByLabelText("Transfer to Locked phone");
    fireEvent.change(within(row).getByLabelText("PIN"), { target: { value: "2468" } });
    fireEvent.click(within(row).getByText("Send again"));
    expect(calls).toContainEqual(["resendWithPin", "t5", "2468"]);
  });

  it("shows a peer's names with control and bidi characters escaped, not obeyed", async () => {
    const spoof = { ...prompt("t1"), first_names: ["invoice\u202Efdp.exe", "two\nlines.txt"] };
    const { api, emit } = fakeApi({ prompts: [spoof] });
    render(<App api={api} />);
    const dialog = await screen.findByRole("dialog");
    expect(dialog.textContent).toContain("invoice\\u{202e}fdp.exe");
    expect(dialog.textContent).toContain("two\\u{a}lines.txt");
    expect(dialog.textContent).not.toMatch(/[\u202e\n]/);
    fireEvent.click(screen.getByText("Reject"));
    emit({
      type: "transfer",
      transfer: transfer("t1", { direction: "receive", state: "failed", reason: "the sender gave up: \u001b[2J", failed: [{ path: "photos/\u2066x.jpg", reason: "bad" }], failed_count: 1 } as never),
    });
    const row = await screen.findByLabelText(/Transfer from beta/);
    expect(row.textContent).toContain("the sender gave up: \\u{1b}[2J");
    expect(row.textContent).toContain("photos/\\u{2066}x.jpg");
    expect(row.textContent).not.toMatch(/[\u001b\u2066]/);
  });

  it("shows progress with pause and cancel, then the final state", async () => {
    const { api, calls, emit } = fakeApi();
    render(<App api={api} />);
    await screen.findByText("my-laptop");
    emit({ type: "transfer", transfer: transfer("t1") });
    expect(await screen.findByText("25.0%")).toBeTruthy();
    fireEvent.click(screen.getByText("Pause"));
    expect(calls).toContainEqual(["pause", "t1"]);
    emit({ type: "transfer", transfer: transfer("t1", { state: "paused", by: "peer" } as never) });
    expect(await screen.findByText("Paused by them")).toBeTruthy();
    fireEvent.click(screen.getByText("Resume"));
    expect(calls).toContainEqual(["resume", "t1"]);
    emit({ type: "transfer", transfer: transfer("t1", { state: "done", bytes_done: 1000, dest: "/home/me/Downloads" } as never) });
    expect(await screen.findByText("Done · verified")).toBeTruthy();
    fireEvent.click(screen.getByText("Show in folder"));
    expect(calls).toContainEqual(["showInFolder", "/home/me/Downloads"]);
    expect(screen.queryByText("Cancel")).toBeNull();
  });

  it("counts every renamed and failed file, lists the first ones the event carries, fetches the rest", async () => {
    const { api, calls, emit } = fakeApi();
    (api as { renamedFiles: unknown }).renamedFiles = (...args: unknown[]) => {
      calls.push(["renamedFiles", ...args]);
      const [, offset, limit] = args as [string, number, number];
      return Promise.resolve(Array.from({ length: limit }, (_, i) => ({ id: offset + i + 1, original: `a${offset + i}:b`, local: `a${offset + i}`, reason: "not allowed here" })));
    };
    (api as { failedFiles: unknown }).failedFiles = (...args: unknown[]) => {
      calls.push(["failedFiles", ...args]);
      return Promise.resolve([{ path: "y1.bin", reason: "disk full" }, { path: "y2.bin", reason: "disk full" }]);
    };
    render(<App api={api} />);
    await screen.findByText("my-laptop");
    emit({
      type: "transfer",
      transfer: transfer("t1", {
        state: "failed", reason: "3 of 9 files failed",
        renamed: [{ id: 1, original: "a:b", local: "a_b", reason: "not allowed here" }], renamed_count: 5000,
        failed: [{ path: "x.bin", reason: "disk full" }], failed_count: 3,
      } as never),
    });
    expect(await screen.findByText("5,000 renamed")).toBeTruthy();
    expect(screen.getByText("… and 4,999 more")).toBeTruthy();
    expect(screen.getByText("3 failed")).toBeTruthy();
    expect(screen.getByText("… and 2 more")).toBeTruthy();
    expect(screen.getByText("x.bin")).toBeTruthy();
    // The rest comes from the node, a page at a time, on request.
    fireEvent.click(screen.getByText("Show 500 more"));
    await waitFor(() => expect(screen.getByText("… and 4,499 more")).toBeTruthy());
    expect(calls).toContainEqual(["renamedFiles", "t1", 1, 500]);
    expect(screen.getByText("a500")).toBeTruthy();
    fireEvent.click(screen.getByText("Show 2 more"));
    await waitFor(() => expect(screen.getByText("y2.bin")).toBeTruthy());
    expect(calls).toContainEqual(["failedFiles", "t1", 1, 500]);
    expect(screen.queryByText("… and 2 more")).toBeNull();
  });

  it("reports a failed command instead of swallowing it", async () => {
    const { api } = fakeApi();
    (api as { connect: unknown }).connect = vi.fn(() => Promise.reject(new Error("could not connect to 10.0.0.9:1: timed out")));
    render(<App api={api} />);
    await screen.findByText("my-laptop");
    fireEvent.change(screen.getByLabelText("Connect to address"), { target: { value: "10.0.0.9:1" } });
    fireEvent.click(screen.getByText("Connect"));
    expect((await screen.findByRole("alert")).textContent).toContain("could not connect");
  });

  it("pairs a peer into a library from its card, and shows the code until it ends", async () => {
    const me = "m".repeat(52), b = "b".repeat(52);
    const { api, calls, emit } = fakeApi({ peers: [peer(b, "beta")], libraries: [library("l1", "Family", [[me, "my-laptop", "member"]])] });
    render(<App api={api} />);
    fireEvent.click(await screen.findByLabelText("Pair with beta"));
    expect(screen.getByRole("dialog").textContent).toContain("Pair with beta");
    fireEvent.click(screen.getByText("Pair"));
    await waitFor(() => expect(calls).toContainEqual(["pair", b, "l1"]));
    emit({ type: "pairing", pairing: pairing("p1", { role: "initiator", peer: b, peer_name: "beta", state: "connecting" } as never) });
    emit({ type: "pairing", pairing: pairing("p1", { role: "initiator", peer: b, peer_name: "beta" }) });
    expect(screen.getByText("123 456")).toBeTruthy();
    expect(screen.getByText(/Check that beta shows the same code/)).toBeTruthy();
    fireEvent.click(screen.getByText("Codes match"));
    expect(calls).toContainEqual(["answerPairing", "p1", true]);
    emit({ type: "pairing", pairing: pairing("p1", { role: "initiator", peer: b, peer_name: "beta", state: "waiting_for_peer" } as never) });
    expect(screen.getByText("Waiting for beta")).toBeTruthy();
    emit({ type: "pairing", pairing: pairing("p1", { role: "initiator", peer: b, peer_name: "beta", state: "done" } as never) });
    emit({ type: "library", library: library("l1", "Family", [[me, "my-laptop", "member"], [b, "beta", "member"]]) });
    expect(screen.getByText(/beta is now a member of “Family”/)).toBeTruthy();
    fireEvent.click(screen.getByText("Close"));
    expect(screen.queryByRole("dialog")).toBeNull();
    // The library lists beta as online (connected here) and the card says what is shared.
    const member = document.querySelector(`[data-member="${b}"]`)!;
    expect(member.textContent).toContain("online");
    expect(screen.getByText("In Family")).toBeTruthy();
  });

  it("asks a responder to compare codes, and reports a failure with its reason", async () => {
    const { api, calls, emit } = fakeApi({ pairings: [pairing("p1")] });
    render(<App api={api} />);
    expect((await screen.findByRole("dialog")).textContent).toContain("alpha wants to add this device to “Family”");
    fireEvent.click(screen.getByText("Reject"));
    expect(calls).toContainEqual(["answerPairing", "p1", false]);
    emit({ type: "pairing", pairing: pairing("p1", { state: "failed", reason: "rejected here" } as never) });
    expect(screen.getByText(/did not happen: rejected here/)).toBeTruthy();
  });

  it("removes a member, and shows removed and offline members for what they are", async () => {
    const me = "m".repeat(52), b = "b".repeat(52), c = "c".repeat(52);
    const { api, calls } = fakeApi({ libraries: [library("l1", "Family", [[me, "my-laptop", "member"], [b, "beta", "member"], [c, "gamma", "removed"]])] });
    render(<App api={api} />);
    expect(await screen.findByLabelText("Library Family")).toBeTruthy();
    expect(document.querySelector(`[data-member="${b}"]`)!.textContent).toContain("offline");
    expect(document.querySelector(`[data-member="${c}"]`)!.textContent).toContain("removed");
    expect(screen.queryByLabelText("Remove gamma")).toBeNull();
    fireEvent.click(screen.getByLabelText("Remove beta"));
    expect(calls).toContainEqual(["removeMember", "l1", b]);
    fireEvent.click(screen.getByText("Leave…"));
    fireEvent.click(screen.getByText("Delete"));
    expect(calls).toContainEqual(["deleteLibrary", "l1"]);
  });

  it("grants a member what it may do here, and opens the member's device under its grants", async () => {
    const me = "m".repeat(52), b = "b".repeat(52);
    const { api, calls } = fakeApi({ libraries: [library("l1", "Family", [[me, "my-laptop", "member"], [b, "beta", "member"]])] });
    render(<App api={api} />);
    fireEvent.click(await screen.findByLabelText("Access beta"));
    const panel = await screen.findByLabelText("Access for beta");
    expect(within(panel).getByText(/add location · refused/)).toBeTruthy();
    const manage = within(panel).getByLabelText("beta: manage") as HTMLInputElement;
    expect(manage.checked).toBe(false);
    fireEvent.click(manage);
    expect(calls).toContainEqual(["control", { cmd: "grant", library: "l1", node: b, capability: "manage" }]);
    await waitFor(() => expect((within(panel).getByLabelText("beta: manage") as HTMLInputElement).checked).toBe(true));
    fireEvent.click(within(panel).getByLabelText("beta: manage"));
    expect(calls).toContainEqual(["control", { cmd: "revoke", library: "l1", node: b, capability: "manage" }]);

    fireEvent.click(within(panel).getByLabelText("Open beta"));
    const device = await within(panel).findByLabelText("beta's device");
    expect(device.textContent).toContain("beta-desktop");
    expect(device.textContent).toContain("Music");
    expect(within(device).getByLabelText("beta's transfers").textContent).toContain('not granted you "send"');
    expect(calls).toContainEqual(["control", { cmd: "remote", node: b, library: "l1", command: { cmd: "locations", library: "l1" } }]);
    fireEvent.click(within(device).getByLabelText("Rescan Music on beta"));
    expect((await within(panel).findByRole("status")).textContent).toContain('not granted you "manage"');
  });

  it("browses a library: locations with progress, a virtualised grid of 10,000 thumbnails, details", async () => {
    const me = "m".repeat(52);
    const entries = folder(10_000);
    const { api, calls, emit } = fakeApi(
      { libraries: [library("l1", "Family", [[me, "my-laptop", "member"]])], locations: [{ library: "l1", locations: [location("loc1", "Photos")] }] },
      entries,
    );
    render(<App api={api} />);
    expect((await screen.findByLabelText("Library Family")).textContent).toContain("1 location · 10,000 files");
    fireEvent.click(screen.getByLabelText("Browse Family"));
    const grid = await screen.findByRole("grid");
    await waitFor(() => expect(grid.querySelectorAll("[data-entry]").length).toBeGreaterThan(0));
    // Only what is on screen is in the DOM, and only its page was fetched.
    const tiles = grid.querySelectorAll("[data-entry]");
    expect(tiles.length).toBeLessThanOrEqual(60);
    expect(calls.filter((c) => c[0] === "listEntries")).toEqual([["listEntries", "l1", "loc1", "", 0, 256]]);
    const img = tiles[0].querySelector("img")!;
    expect(img.getAttribute("src")).toBe(`ferry://localhost/thumb/l1/${entries[0].cas}`);
    expect(tiles[1].querySelector("img")).toBeNull();
    // Scrolled deep: the far page is fetched and rendered, the DOM stays small.
    fireEvent.scroll(grid, { target: { scrollTop: 164 * 1500 } });
    await waitFor(() => expect(grid.querySelector(`[data-entry="${entries[9000].id}"]`)).toBeTruthy());
    expect(grid.querySelectorAll("[data-entry]").length).toBeLessThanOrEqual(60);
    expect(calls).toContainEqual(["listEntries", "l1", "loc1", "", 8960, 256]);
    // Details of a file, with its content id; open and reveal by id.
    fireEvent.click(screen.getByLabelText("photo9000.jpg"));
    const details = await screen.findByLabelText("Details");
    expect(details.textContent).toContain(entries[9000].cas!);
    await waitFor(() => expect(details.textContent).toContain(`/home/me/Photos/${entries[9000].id}`));
    expect(details.querySelector("img.preview")!.getAttribute("src")).toBe(`ferry://localhost/file/l1/${entries[9000].id}`);
    fireEvent.click(screen.getByText("Show in folder"));
    expect(calls).toContainEqual(["openEntry", "l1", entries[9000].id, true]);
    // The keyboard: End goes to the last entry (its page fetched on the way), ← to the one before.
    fireEvent.keyDown(grid, { key: "End" });
    await waitFor(() => expect(screen.getByLabelText("Details").textContent).toContain("photo9999.jpg"));
    fireEvent.keyDown(grid, { key: "ArrowLeft" });
    await waitFor(() => expect(screen.getByLabelText("Details").textContent).toContain("photo9998.jpg"));
    fireEvent.keyDown(grid, { key: "Home" });
    await waitFor(() => expect(screen.getByLabelText("Details").textContent).toContain("photo0.jpg"));
    // Progress while indexing, and a change on disk refetches what is shown.
    emit({ type: "index", progress: { library: "l1", location: "loc1", phase: "identifying", done: 250, total: 1000, message: null } });
    expect(screen.getByRole("progressbar").getAttribute("aria-valuenow")).toBe("25");
    expect(screen.getByText("identifying 250 / 1,000")).toBeTruthy();
    const before = calls.filter((c) => c[0] === "listEntries").length;
    emit({ type: "contents_changed", library: "l1", location: "loc1" });
    await waitFor(() => expect(calls.filter((c) => c[0] === "listEntries").length).toBeGreaterThan(before), { timeout: 2000 });
    // Offline, and removal.
    emit({ type: "location", library: "l1", location: location("loc1", "Photos", { online: false }) });
    expect(screen.getByText(/This location is offline/)).toBeTruthy();
    fireEvent.click(screen.getByText("Remove…"));
    fireEvent.click(screen.getByText("Remove"));
    expect(calls).toContainEqual(["removeLocation", "l1", "loc1"]);
    emit({ type: "location_removed", library: "l1", location: "loc1" });
    expect(await screen.findByText("No locations yet.")).toBeTruthy();
  });

  it("adds a location with the folder picker, and opens folders in the grid", async () => {
    const me = "m".repeat(52);
    const entries = [{ ...folder(1)[0], id: "d".repeat(32), name: "2024", path: "2024", kind: "dir" as const, cas: null, thumb: false }];
    const { api, calls } = fakeApi({ libraries: [library("l1", "Family", [[me, "my-laptop", "member"]])] }, entries);
    (api as { pickFolder: unknown }).pickFolder = () => Promise.resolve("/home/me/Photos");
    render(<App api={api} />);
    fireEvent.click(await screen.findByLabelText("Browse Family"));
    fireEvent.click(screen.getAllByText("Add location…")[1]);
    await waitFor(() => expect(calls).toContainEqual(["addLocation", "l1", "/home/me/Photos"]));
    (api as { pickFolder: unknown }).pickFolder = () => Promise.resolve(null);
    fireEvent.click(screen.getAllByText("Add location…")[0]);
    expect(calls.filter((c) => c[0] === "addLocation")).toHaveLength(1);
  });

  it("asks before opening a file that would run, and opens documents at once", async () => {
    const me = "m".repeat(52);
    const [doc, exe] = folder(2);
    const entries = [{ ...doc, name: "notes.txt" }, { ...exe, name: "invoice.pdf.exe" }];
    const { api, calls } = fakeApi(
      { libraries: [library("l1", "Family", [[me, "my-laptop", "member"]])], locations: [{ library: "l1", locations: [location("loc1", "Photos")] }] },
      entries,
    );
    // The backend's answer: opening the .exe would run it, so it was not opened.
    (api as { openEntry: unknown }).openEntry = (...args: unknown[]) => {
      calls.push(["openEntry", ...args]);
      return Promise.resolve(args[1] === exe.id && !args[2] && !args[3] ? "is_program" : "done");
    };
    render(<App api={api} />);
    fireEvent.click(await screen.findByLabelText("Browse Family"));
    doubleClick(await screen.findByLabelText("notes.txt"));
    await waitFor(() => expect(calls).toContainEqual(["openEntry", "l1", doc.id, false]));
    expect(screen.queryByRole("alertdialog")).toBeNull();

    doubleClick(screen.getByLabelText("invoice.pdf.exe"));
    const ask = await screen.findByRole("alertdialog");
    expect(ask.textContent).toContain("Run “invoice.pdf.exe”?");
    expect(document.activeElement?.textContent).toBe("Show in folder");
    fireEvent.keyDown(ask, { key: "Escape" });
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(calls.filter((c) => c[0] === "openEntry" && c[2] === exe.id)).toEqual([["openEntry", "l1", exe.id, false]]);

    doubleClick(screen.getByLabelText("invoice.pdf.exe"));
    fireEvent.click(await screen.findByText("Show in folder", { selector: ".dialog button" }));
    expect(calls).toContainEqual(["openEntry", "l1", exe.id, true, false]);
    doubleClick(screen.getByLabelText("invoice.pdf.exe"));
    fireEvent.click(await screen.findByText("Run"));
    expect(calls).toContainEqual(["openEntry", "l1", exe.id, false, true]);
    expect(screen.queryByRole("alertdialog")).toBeNull();
  });
});
