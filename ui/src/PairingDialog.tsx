import { useEffect, useRef, useState } from "react";
import type { Api } from "./api";
import type { LibraryInfo, PairingInfo, PeerSnapshot } from "./bindings";

/** Chooses the library to pair a peer into (or names a new one). */
export function PairStart({ peer, libraries, api, onClose, onError }: { peer: PeerSnapshot; libraries: LibraryInfo[]; api: Api; onClose: () => void; onError: (e: unknown) => void }) {
  const usable = libraries.filter((l) => !l.removed && !l.members.some((m) => m.node === peer.id && m.state === "member"));
  const [library, setLibrary] = useState(usable[0]?.id ?? "");
  const [name, setName] = useState("");
  const go = async () => {
    try {
      const id = library || (await api.createLibrary(name.trim())).id;
      await api.pair(peer.id, id);
      onClose();
    } catch (e) {
      onError(e);
    }
  };
  return (
    <div className="overlay">
      <div className="dialog" role="dialog" aria-modal="true" aria-labelledby="pair-title" onKeyDown={(e) => e.key === "Escape" && onClose()}>
        <h3 id="pair-title">Pair with {peer.name}</h3>
        <p className="verified" title={`Fingerprint ${peer.id}`}>Verified device <code className="fp">{peer.short_id}</code></p>
        <p className="muted">{peer.name} joins the library and can reach its members. Both devices will show a code to compare.</p>
        {usable.length > 0 ? (
          <>
            <label htmlFor="pair-library">Library</label>
            <select id="pair-library" value={library} onChange={(e) => setLibrary(e.target.value)}>
              {usable.map((l) => <option key={l.id} value={l.id}>{l.name}</option>)}
            </select>
          </>
        ) : (
          <>
            <label htmlFor="pair-new">Name a new library</label>
            <input id="pair-new" placeholder="Family photos" value={name} autoFocus onChange={(e) => setName(e.target.value)} />
          </>
        )}
        <div className="dialog-actions">
          <button className="ghost" onClick={onClose}>Cancel</button>
          <button onClick={go} disabled={!library && !name.trim()}>Pair</button>
        </div>
      </div>
    </div>
  );
}

/** A pairing in progress: the code to compare, the user's verdict, and the outcome. */
export function PairingDialog({ pairing, more, api, onClose, onError }: { pairing: PairingInfo; more: number; api: Api; onClose: () => void; onError: (e: unknown) => void }) {
  const first = useRef<HTMLButtonElement>(null);
  const [deadline] = useState(() => (pairing.state === "confirm" ? Date.now() + pairing.expires_in_ms : 0));
  const [left, setLeft] = useState(0);
  useEffect(() => {
    first.current?.focus();
  }, [pairing.state]);
  useEffect(() => {
    if (!deadline) return;
    const tick = () => setLeft(Math.max(0, Math.ceil((deadline - Date.now()) / 1000)));
    tick();
    const t = setInterval(tick, 500);
    return () => clearInterval(t);
  }, [deadline]);
  const who = pairing.peer_name || pairing.peer_short;
  const answer = (accept: boolean) => api.answerPairing(pairing.id, accept).catch(onError);
  const responder = pairing.role === "responder";
  const code = pairing.code && (
    <div className="code" aria-label={`Code ${pairing.code}`} data-code={pairing.code}>{pairing.code}</div>
  );
  let title: string;
  let body: React.ReactNode;
  let actions: React.ReactNode;
  switch (pairing.state) {
    case "connecting":
      title = `Pairing with ${who}…`;
      body = <p className="muted">Connecting and agreeing on a code.</p>;
      actions = <button ref={first} className="ghost" onClick={onClose}>Hide</button>;
      break;
    case "confirm":
      title = responder ? `${who} wants to add this device to “${pairing.library_name}”` : `Pair with ${who}`;
      body = (
        <>
          <p>{responder ? "Accept only if the other device shows the same code:" : `Check that ${who} shows the same code:`}</p>
          {code}
          <p className="countdown">Declined automatically in {left}s{more > 0 ? ` · ${more} more waiting` : ""}</p>
        </>
      );
      actions = (
        <>
          <button className="danger" onClick={() => answer(false)}>{responder ? "Reject" : "Cancel"}</button>
          <button ref={first} onClick={() => answer(true)}>{responder ? "Accept" : "Codes match"}</button>
        </>
      );
      break;
    case "waiting_for_peer":
      title = `Waiting for ${who}`;
      body = (
        <>
          <p className="muted">Confirmed here. Now confirm the same code on {who}.</p>
          {code}
        </>
      );
      actions = <button ref={first} className="danger" onClick={() => answer(false)}>Cancel</button>;
      break;
    case "done":
      title = "Paired";
      body = <p>{responder ? `This device joined “${pairing.library_name}”.` : `${who} is now a member of “${pairing.library_name}”.`}</p>;
      actions = <button ref={first} onClick={onClose}>Close</button>;
      break;
    case "failed":
      title = "Pairing failed";
      body = <p>Pairing with {who} did not happen: {pairing.reason}. Nothing was changed on either device.</p>;
      actions = <button ref={first} onClick={onClose}>Close</button>;
      break;
  }
  return (
    <div className="overlay">
      <div className="dialog pairing" role="dialog" aria-modal="true" aria-labelledby="pairing-title" data-pairing={pairing.id} data-state={pairing.state}
        onKeyDown={(e) => e.key === "Escape" && (pairing.state === "confirm" ? answer(false) : onClose())}>
        <h3 id="pairing-title">{title}</h3>
        <p className="verified" title={`Fingerprint ${pairing.peer}`}>Verified device <code className="fp">{pairing.peer_short}</code></p>
        {body}
        <div className="dialog-actions">{actions}</div>
      </div>
    </div>
  );
}
