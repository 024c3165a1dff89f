// The backend, as the UI sees it: the generated bindings with errors turned into exceptions,
// plus the drag-and-drop hook. Tests replace this module.

import { getCurrentWebview } from "@tauri-apps/api/webview";
import { commands, events, type Command, type Event, type Settings } from "./bindings";

type R<T> = { status: "ok"; data: T } | { status: "error"; error: string };

async function ok<T>(p: Promise<R<T>>): Promise<T> {
  const r = await p;
  if (r.status === "error") throw new Error(r.error);
  return r.data;
}

// Custom schemes are `ferry://localhost/…` in WebKit (Linux, macOS) and
// `http://ferry.localhost/…` in WebView2 (Windows).
const schemeBase = typeof navigator !== "undefined" && /Windows/.test(navigator.userAgent) ? "http://ferry.localhost" : "ferry://localhost";

let mediaBase: Promise<string | null> | undefined;

export const api = {
  snapshot: () => ok(commands.snapshot()),
  /** The node's command surface (the CLI's): grants, and commands run on members (`remote`). */
  control: (command: Command) => ok(commands.control(command)),
  sendPaths: (peer: string, paths: string[]) => ok(commands.sendPaths(peer, paths)),
  pickAndSend: (peer: string, folders: boolean) => ok(commands.pickAndSend(peer, folders)),
  /** A LocalSend send again, with the PIN its receiver asked for. */
  resendWithPin: (id: string, pin: string) => ok(commands.resendWithPin(id, pin)),
  answer: (transfer: string, accept: boolean, chooseFolder: boolean) => ok(commands.answerPrompt(transfer, accept, chooseFolder)),
  pause: (id: string) => ok(commands.pauseTransfer(id)),
  resume: (id: string) => ok(commands.resumeTransfer(id)),
  cancel: (id: string) => ok(commands.cancelTransfer(id)),
  /** A transfer's renamed / failed files from `offset` on (events list only the first ones). */
  renamedFiles: (id: string, offset: number, limit: number) => ok(commands.renamedFiles(id, offset, limit)),
  failedFiles: (id: string, offset: number, limit: number) => ok(commands.failedFiles(id, offset, limit)),
  connect: (address: string) => ok(commands.connectAddress(address)),
  showInFolder: (path: string) => ok(commands.showInFolder(path)),
  pickFolder: () => ok(commands.pickFolder()),
  saveSettings: (s: Settings) => ok(commands.saveSettings(s)),
  openWindow: () => ok(commands.openWindow()),
  createLibrary: (name: string) => ok(commands.createLibrary(name)),
  renameLibrary: (library: string, name: string) => ok(commands.renameLibrary(library, name)),
  deleteLibrary: (library: string) => ok(commands.deleteLibrary(library)),
  removeMember: (library: string, node: string) => ok(commands.removeMember(library, node)),
  pair: (peer: string, library: string) => ok(commands.pairPeer(peer, library)),
  answerPairing: (pairing: string, accept: boolean) => ok(commands.answerPairing(pairing, accept)),
  addLocation: (library: string, path: string) => ok(commands.addLocation(library, path)),
  removeLocation: (library: string, location: string) => ok(commands.removeLocation(library, location)),
  rescanLocation: (library: string, location: string) => ok(commands.rescanLocation(library, location)),
  /** Whether a member's location has its thumbnails copied to this device. */
  setLocationPreviews: (library: string, location: string, on: boolean) => ok(commands.setLocationPreviews(library, location, on)),
  listEntries: (library: string, location: string, dir: string, offset: number, limit: number) =>
    ok(commands.listEntries(library, location, dir, offset, limit)),
  entryDetails: (library: string, entry: string) => ok(commands.entryDetails(library, entry)),
  /** Starts copying a member's file or folder into the download folder, verified. */
  saveEntry: (library: string, entry: string) => ok(commands.saveEntry(library, entry)),
  pauseDownload: (id: string) => ok(commands.pauseDownload(id)),
  resumeDownload: (id: string) => ok(commands.resumeDownload(id)),
  cancelDownload: (id: string) => ok(commands.cancelDownload(id)),
  /** Opens (or reveals) an entry; a program is opened only with `runProgram` ("is_program" otherwise). */
  openEntry: (library: string, entry: string, reveal: boolean, runProgram = false) =>
    ok(commands.openEntry(library, entry, reveal, runProgram)),
  /** A `ferry://` URL: a thumbnail by content id, or an original file by entry id. */
  contentUrl: (kind: "thumb" | "file", library: string, id: string) => `${schemeBase}/${kind}/${library}/${id}`,
  /** The URL `<video>` and `<audio>` play an entry from: the loopback server where the web view
   * cannot play media from a custom scheme (Linux), else `contentUrl`. */
  mediaUrl: async (library: string, id: string) => {
    mediaBase ??= ok(commands.mediaBase()).catch(() => null);
    const base = await mediaBase;
    return base ? `${base}/file/${library}/${id}` : api.contentUrl("file", library, id);
  },
  onEvent: (f: (e: Event) => void) => events.nodeEvent.listen((e) => f(e.payload)),
  /** Files dropped on the window: their paths and where (in CSS pixels). */
  onDrop: (f: (d: { kind: "over" | "drop" | "leave"; paths: string[]; x: number; y: number }) => void) =>
    getCurrentWebview().onDragDropEvent((e) => {
      const p = e.payload;
      const scale = window.devicePixelRatio || 1;
      if (p.type === "over") f({ kind: "over", paths: [], x: p.position.x / scale, y: p.position.y / scale });
      else if (p.type === "drop") f({ kind: "drop", paths: p.paths, x: p.position.x / scale, y: p.position.y / scale });
      else if (p.type === "leave") f({ kind: "leave", paths: [], x: 0, y: 0 });
    }),
};

export type Api = typeof api;
