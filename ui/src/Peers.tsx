import { useState } from "react";
import type { Api } from "./api";
import type { LocalSendDevice, PeerSnapshot } from "./bindings";
import { formatBytes, percent, transferWith, type State } from "./state";
import { shown } from "./text";

const osName: Record<string, string> = { linux: "Linux", macos: "macOS", windows: "Windows", android: "Android", ios: "iOS" };

function PeerCard({ peer, state, api, dropping, onError, onPair }: { peer: PeerSnapshot; state: State; api: Api; dropping: boolean; onError: (e: unknown) => void; onPair: (peer: string) => void }) {
  const shared = state.libraries.filter((l) => l.members.some((m) => m.node === peer.id && m.state === "member")).map((l) => l.name);
  const t = transferWith(state, peer.id);
  const status = !t
    ? peer.state === "connected"
      ? peer.rtt_ms != null
        ? `${peer.rtt_ms.toFixed(peer.rtt_ms < 10 ? 1 : 0)} ms`
        : "connected"
      : "found, connecting…"
    : t.state === "waiting"
      ? "waiting for them to accept…"
      : t.state === "paused"
        ? `paused · ${percent(t).toFixed(0)}%`
        : t.state === "interrupted"
          ? "interrupted, will resume"
          : `sending · ${percent(t).toFixed(0)}% · ${formatBytes(t.speed_bps)}/s`;
  return (
    <li className={`peer ${dropping ? "drop" : ""} ${peer.state}`} data-peer={peer.id} aria-label={`Peer ${peer.name}`}>
      <div className="peer-top">
        <span className="avatar" aria-hidden>{(peer.name[0] ?? "?").toUpperCase()}</span>
        <div className="peer-id">
          <div className="peer-name">{peer.name}</div>
          <div className="peer-meta">
            <span>{osName[peer.os] ?? peer.os}</span>
            <code className="fp" title={`Verified fingerprint ${peer.id}`}>{peer.short_id}</code>
          </div>
        </div>
        <span className={`dot ${peer.state}`} title={peer.state} />
      </div>
      <div className="peer-status" aria-live="polite">{status}</div>
      {shared.length > 0 && <div className="peer-libraries" title="Libraries you share">In {shared.join(", ")}</div>}
      {t && t.state !== "waiting" && <div className="bar"><div style={{ width: `${percent(t)}%` }} /></div>}
      <div className="peer-actions">
        <button onClick={() => api.pickAndSend(peer.id, false).catch(onError)}>Send files</button>
        <button className="secondary" onClick={() => api.pickAndSend(peer.id, true).catch(onError)}>Send folder</button>
        <button className="ghost" onClick={() => onPair(peer.id)} aria-label={`Pair with ${peer.name}`}>Pair…</button>
      </div>
      <div className="drop-hint" aria-hidden>Drop to send to {peer.name}</div>
    </li>
  );
}

/** A LocalSend device: sending works like to a Ferry peer, but its identity is its own claim. */
function LocalSendCard({ device, state, api, dropping, onError }: { device: LocalSendDevice; state: State; api: Api; dropping: boolean; onError: (e: unknown) => void }) {
  const t = transferWith(state, device.fingerprint);
  const status = !t
    ? device.device_model ? `${device.device_model} · ${device.device_type}` : device.device_type
    : t.state === "waiting"
      ? "waiting for them to accept…"
      : `sending · ${percent(t).toFixed(0)}% · ${formatBytes(t.speed_bps)}/s`;
  return (
    <li className={`peer localsend-device ${dropping ? "drop" : ""}`} data-peer={device.fingerprint} aria-label={`LocalSend device ${device.alias}`}>
      <div className="peer-top">
        <span className="avatar" aria-hidden>{(device.alias[0] ?? "?").toUpperCase()}</span>
        <div className="peer-id">
          <div className="peer-name">{shown(device.alias)}</div>
          <div className="peer-meta">
            <span className="badge">LocalSend</span>
            <code className="fp" title={`Certificate SHA-256 ${device.fingerprint} (${device.verified ? "shown" : "claimed, not shown"}); not a Ferry-verified identity`}>{device.short}</code>
          </div>
        </div>
      </div>
      <div className="peer-status" aria-live="polite">{status}</div>
      {t && t.state === "transferring" && <div className="bar"><div style={{ width: `${percent(t)}%` }} /></div>}
      <div className="peer-actions">
        <button onClick={() => api.pickAndSend(device.fingerprint, false).catch(onError)}>Send files</button>
        <button className="secondary" onClick={() => api.pickAndSend(device.fingerprint, true).catch(onError)}>Send folder</button>
      </div>
      <div className="drop-hint" aria-hidden>Drop to send to {shown(device.alias)}</div>
    </li>
  );
}

function ConnectForm({ api, onError }: { api: Api; onError: (e: unknown) => void }) {
  const [address, setAddress] = useState("");
  const [busy, setBusy] = useState(false);
  return (
    <form
      className="connect"
      onSubmit={(e) => {
        e.preventDefault();
        if (!address.trim()) return;
        setBusy(true);
        api
          .connect(address.trim())
          .then(() => setAddress(""))
          .catch(onError)
          .finally(() => setBusy(false));
      }}
    >
      <label htmlFor="connect-address">Connect to address</label>
      <input id="connect-address" placeholder="192.168.1.20:7787" value={address} onChange={(e) => setAddress(e.target.value)} spellCheck={false} />
      <button type="submit" className="secondary" disabled={busy || !address.trim()}>{busy ? "Connecting…" : "Connect"}</button>
    </form>
  );
}

export function Peers({ state, api, dropTarget, onError, onPair }: { state: State; api: Api; dropTarget: string | null; onError: (e: unknown) => void; onPair: (peer: string) => void }) {
  return (
    <section className="panel" aria-labelledby="nearby">
      <div className="panel-head">
        <h2 id="nearby">Nearby</h2>
        <ConnectForm api={api} onError={onError} />
      </div>
      {state.peers.length === 0 && state.localsend.length === 0 ? (
        <div className="empty">
          <svg className="empty-icon" viewBox="0 0 48 48" aria-hidden>
            <circle cx="24" cy="30" r="4" fill="currentColor" />
            <path d="M14 22a14 14 0 0 1 20 0M8 16a22 22 0 0 1 32 0" fill="none" stroke="currentColor" strokeWidth="3.5" strokeLinecap="round" />
          </svg>
          <p>No one nearby yet — is Ferry open on the other device?</p>
          <p className="muted">Both devices need to be on the same network. Without multicast, connect by address above.</p>
        </div>
      ) : (
        <ul className="peers">
          {state.peers.map((p) => (
            <PeerCard key={p.id} peer={p} state={state} api={api} dropping={dropTarget === p.id} onError={onError} onPair={onPair} />
          ))}
          {state.localsend.map((d) => (
            <LocalSendCard key={d.fingerprint} device={d} state={state} api={api} dropping={dropTarget === d.fingerprint} onError={onError} />
          ))}
        </ul>
      )}
      <p className="hint muted">Drag files or folders from your file manager onto a device to send them.</p>
    </section>
  );
}
