import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { App } from "./App";
import type { Api } from "./api";
import type { Event, Snapshot } from "./bindings";
import { library, pairing, peer, prompt, transfer } from "./fixtures";

/** A fake backend: records calls, and lets a test push node events. */
function fakeApi(snapshot: Partial<Snapshot> = {}) {
  let emit: (e: Event) => void = () => {};
  const calls: unknown[][] = [];
  const rec = (name: string) => (...args: unknown[]) => {
    calls.push([name, ...args]);
    return Promise.resolve(null);
  };
  const api = {
    snapshot: () =>
      Promise.resolve({
        me: { id: "m".repeat(52), short_id: "mmmmmmmmmmmm", name: "my-laptop", listen: "0.0.0.0:7000", discovery: true },
        peers: [], transfers: [], prompts: [], libraries: [], pairings: [],
        settings: { name: "", download_dir: "/home/me/Downloads", discovery: true, interfaces: [], theme: "system" },
        ...snapshot,
      } as Snapshot),
    sendPaths: rec("sendPaths"), pickAndSend: rec("pickAndSend"), answer: rec("answer"), pause: rec("pause"), resume: rec("resume"),
    cancel: rec("cancel"), connect: rec("connect"), showInFolder: rec("showInFolder"), pickFolder: rec("pickFolder"),
    saveSettings: rec("saveSettings"), openWindow: rec("openWindow"),
    createLibrary: rec("createLibrary"), renameLibrary: rec("renameLibrary"), deleteLibrary: rec("deleteLibrary"),
    removeMember: rec("removeMember"), pair: rec("pair"), answerPairing: rec("answerPairing"),
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
    fireEvent.click(screen.getByText("Accept"));
    expect(calls).toContainEqual(["answer", "t1", true, false]);
    expect(screen.queryByRole("dialog")).toBeNull();
    // A second prompt, answered in another window: this one closes it too.
    emit({ type: "spacedrop_prompt", prompt: prompt("t2") });
    expect(await screen.findByRole("dialog")).toBeTruthy();
    emit({ type: "prompt_resolved", transfer: "t2", outcome: "accepted" });
    expect(screen.queryByRole("dialog")).toBeNull();
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
});
