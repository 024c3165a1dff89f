import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import type { Api } from "./api";
import type { Event, Settings, Snapshot, TransferInfo } from "./bindings";
import { Libraries } from "./Libraries";
import { LibraryView } from "./LibraryView";
import { PairingDialog, PairStart } from "./PairingDialog";
import { Peers } from "./Peers";
import { PromptDialog } from "./PromptDialog";
import { SettingsDialog } from "./SettingsDialog";
import { Transfers } from "./Transfers";
import { dismissPairing, empty, fromSnapshot, markAnswering, reduce, withOlder, type State } from "./state";

type Action =
  /** `since`: the events that arrived while the snapshot was on its way, newer than it may be. */
  | { kind: "snapshot"; s: Snapshot; since: Event[] }
  | { kind: "event"; e: Event }
  | { kind: "answering"; id: string }
  | { kind: "settings"; s: Settings }
  | { kind: "dismiss_pairing"; id: string }
  /** A page of older transfers the user asked for. */
  | { kind: "older"; transfers: TransferInfo[]; next: string | null };

function reducer(state: State, a: Action): State {
  switch (a.kind) {
    case "snapshot":
      return a.since.reduce(reduce, fromSnapshot(a.s));
    case "event":
      return reduce(state, a.e);
    case "answering":
      return markAnswering(state, a.id);
    case "settings":
      return { ...state, settings: a.s };
    case "dismiss_pairing":
      return dismissPairing(state, a.id);
    case "older":
      return withOlder(state, a.transfers, a.next);
  }
}

/** The app icon's ferry, drawn inline (no emoji font needed). */
function Logo() {
  return (
    <svg className="logo" viewBox="0 0 1024 1024" aria-hidden>
      <defs>
        <linearGradient id="logo-bg" x1="0" y1="0" x2="1" y2="1">
          <stop offset="0" stopColor="#2f6bf2" />
          <stop offset="1" stopColor="#14b8c4" />
        </linearGradient>
      </defs>
      <rect x="64" y="64" width="896" height="896" rx="200" fill="url(#logo-bg)" />
      <rect x="392" y="330" width="210" height="120" rx="26" fill="#fff" opacity="0.92" />
      <path d="M250 470 H774 L700 610 Q512 650 324 610 Z" fill="#fff" />
      <path d="M200 700 Q281 650 362 700 T524 700 T686 700 T848 700" fill="none" stroke="#fff" strokeWidth="38" strokeLinecap="round" opacity="0.85" />
    </svg>
  );
}

function applyTheme(theme: Settings["theme"] | undefined) {
  document.documentElement.dataset.theme = theme && theme !== "system" ? theme : "";
}

export function App({ api }: { api: Api }) {
  const [state, dispatch] = useReducer(reducer, empty);
  const [error, setError] = useState<string | null>(null);
  const [showSettings, setShowSettings] = useState(false);
  const [dropTarget, setDropTarget] = useState<string | null>(null);
  const [pairWith, setPairWith] = useState<string | null>(null);
  const [browsing, setBrowsing] = useState<string | null>(null);

  const report = useCallback((e: unknown) => setError(e instanceof Error ? e.message : String(e)), []);

  // The snapshot first, then the event stream keeps it current (no polling). Events that
  // arrive while a snapshot is on its way are applied again on top of it: the snapshot may
  // have been taken before them (a device list sent only on change would stay lost).
  const since = useRef<Event[] | null>(null);
  const loadSnapshot = useCallback(() => {
    since.current = [];
    return api.snapshot().then((s) => {
      dispatch({ kind: "snapshot", s, since: since.current ?? [] });
      since.current = null;
    });
  }, [api]);
  useEffect(() => {
    let stop = () => {};
    let live = true;
    api
      .onEvent((e) => {
        since.current?.push(e);
        dispatch({ kind: "event", e });
      })
      .then((unlisten) => {
        stop = unlisten;
        return live ? loadSnapshot() : undefined;
      })
      .catch(report);
    return () => {
      live = false;
      stop();
    };
  }, [api, report, loadSnapshot]);

  useEffect(() => applyTheme(state.settings?.theme), [state.settings?.theme]);

  // The node lists the newest transfers at first; older ones a page at a time.
  const showOlder = useCallback(() => {
    if (!state.transfersNext) return;
    api
      .control({ cmd: "transfers", limit: 100, before: state.transfersNext })
      .then((r) => r.reply === "transfers" && dispatch({ kind: "older", transfers: r.transfers, next: r.next ?? null }))
      .catch(report);
  }, [api, report, state.transfersNext]);

  // Files dragged from the file manager onto a peer card.
  useEffect(() => {
    let stop = () => {};
    const peerAt = (x: number, y: number) => (document.elementFromPoint(x, y)?.closest("[data-peer]") as HTMLElement | null)?.dataset.peer ?? null;
    api
      .onDrop((d) => {
        if (d.kind === "over") setDropTarget(peerAt(d.x, d.y));
        else if (d.kind === "leave") setDropTarget(null);
        else {
          setDropTarget(null);
          const peer = peerAt(d.x, d.y);
          if (peer && d.paths.length) api.sendPaths(peer, d.paths).catch(report);
        }
      })
      .then((unlisten) => (stop = unlisten))
      .catch(() => {}); // not inside Tauri (tests, a plain browser)
    return () => stop();
  }, [api, report]);

  const prompt = state.prompts.find((p) => !state.answering.includes(p.transfer));
  const pairing = state.pairings[0];
  const pairPeer = state.peers.find((p) => p.id === pairWith);

  return (
    <div className={`app${browsing ? " browsing" : ""}`}>
      <header className="topbar">
        <div className="brand">
          <Logo />
          <span>Ferry</span>
        </div>
        {state.me && (
          <div className="me" title={`Fingerprint ${state.me.id}\nListening on ${state.me.listen}`}>
            <span className="me-name">{state.me.name}</span>
            <code className="fp">{state.me.short_id}</code>
            {!state.me.discovery && <span className="badge muted">discovery off</span>}
            {state.attached && (
              <span className="badge" title="This window is a front end of a Ferry node started elsewhere on this machine (ferry node); closing it leaves that node running">
                attached
              </span>
            )}
          </div>
        )}
        <div className="actions">
          <button className="ghost" onClick={() => api.openWindow().catch(report)} title="Open another window">New window</button>
          <button className="ghost" onClick={() => setShowSettings(true)} aria-label="Settings">Settings</button>
        </div>
      </header>

      {error && (
        <div className="error" role="alert">
          <span>{error}</span>
          <button className="ghost small" onClick={() => setError(null)} aria-label="Dismiss">✕</button>
        </div>
      )}

      {browsing ? (
        <LibraryView state={state} api={api} library={browsing} onBack={() => setBrowsing(null)} onError={report} />
      ) : (
        <main>
          <Peers state={state} api={api} dropTarget={dropTarget} onError={report} onPair={setPairWith} />
          <Transfers transfers={state.transfers} downloads={state.downloads} api={api} onError={report} onOlder={state.transfersNext ? showOlder : undefined} />
          <Libraries state={state} api={api} onError={report} onBrowse={setBrowsing} />
        </main>
      )}

      {pairPeer && !pairing && (
        <PairStart peer={pairPeer} libraries={state.libraries} api={api} onClose={() => setPairWith(null)} onError={report} />
      )}

      {pairing && (
        <PairingDialog
          key={pairing.id}
          pairing={pairing}
          more={state.pairings.length - 1}
          api={api}
          onClose={() => dispatch({ kind: "dismiss_pairing", id: pairing.id })}
          onError={report}
        />
      )}

      {prompt && !pairing && (
        <PromptDialog
          key={prompt.transfer}
          prompt={prompt}
          more={state.prompts.length - 1}
          onAnswer={(accept, choose) => {
            dispatch({ kind: "answering", id: prompt.transfer });
            api.answer(prompt.transfer, accept, choose).catch(report);
          }}
        />
      )}

      {showSettings && state.settings && (
        <SettingsDialog
          settings={state.settings}
          api={api}
          onClose={() => setShowSettings(false)}
          onSaved={(s) => {
            dispatch({ kind: "settings", s });
            setShowSettings(false);
            loadSnapshot().catch(report);
          }}
          onError={report}
        />
      )}
    </div>
  );
}
