import { useState, type ReactNode } from "react";
import type { Api } from "./api";
import type { DownloadInfo, TransferInfo } from "./bindings";
import { finished, formatBytes, formatEta, percent } from "./state";
import { shown } from "./text";

function stateLabel(t: TransferInfo): string {
  switch (t.state) {
    case "waiting":
      return "Waiting for them to accept";
    case "transferring":
      return t.direction === "send" ? "Sending" : "Receiving";
    case "paused":
      return t.by === "local" ? "Paused by you" : "Paused by them";
    case "interrupted":
      return `Interrupted — ${shown(t.reason)}`;
    case "done":
      // LocalSend checks sizes (and SHA-256 where the sender gives it), not BLAKE3.
      return t.via.kind === "localsend" ? "Done" : "Done · verified";
    case "failed":
      return `Failed — ${shown(t.reason)}`;
    case "rejected":
      return t.reason === "no answer in time" ? "Timed out — no answer" : `Rejected — ${shown(t.reason)}`;
    case "cancelled":
      return t.by === "local" ? "Cancelled by you" : "Cancelled by them";
  }
}

/** A LocalSend receiver that wants a PIN: ask for it, then send the same files again. */
function PinRetry({ t, api, onError }: { t: TransferInfo; api: Api; onError: (e: unknown) => void }) {
  const [pin, setPin] = useState("");
  return (
    <form className="pin-retry" onSubmit={(e) => { e.preventDefault(); if (pin) api.resendWithPin(t.id, pin).catch(onError); }}>
      <label htmlFor={`pin-${t.id}`}>PIN</label>
      <input id={`pin-${t.id}`} value={pin} onChange={(e) => setPin(e.target.value)} autoComplete="off" spellCheck={false} />
      <button type="submit" className="small" disabled={!pin}>Send again</button>
    </form>
  );
}

function TransferRow({ t, api, onError }: { t: TransferInfo; api: Api; onError: (e: unknown) => void }) {
  const pct = percent(t);
  const running = t.state === "transferring";
  const who = t.peer_name || t.peer.slice(0, 12);
  return (
    <li className={`transfer ${t.state}`} data-transfer={t.id} aria-label={`Transfer ${t.direction === "send" ? "to" : "from"} ${who}`}>
      <div className="transfer-head">
        <span className={`dir ${t.direction}`} aria-hidden>{t.direction === "send" ? "↑" : "↓"}</span>
        <div className="transfer-title">
          <div>
            {t.direction === "send" ? "To" : "From"} <strong>{who}</strong>
            {t.via.kind === "localsend" && <span className="badge">LocalSend</span>} · {t.files_total} file{t.files_total === 1 ? "" : "s"} · {formatBytes(t.bytes_total)}
          </div>
          <div className={`transfer-state ${t.state}`} data-state={t.state}>{stateLabel(t)}</div>
        </div>
        <div className="transfer-actions">
          {/* LocalSend has no pause and no resume. */}
          {running && t.via.kind === "ferry" && <button className="secondary small" onClick={() => api.pause(t.id).catch(onError)}>Pause</button>}
          {(t.state === "paused" || (t.state === "interrupted" && t.direction === "send")) && (
            <button className="small" onClick={() => api.resume(t.id).catch(onError)}>Resume</button>
          )}
          {!finished(t) && <button className="danger small" onClick={() => api.cancel(t.id).catch(onError)}>Cancel</button>}
          {t.state === "done" && t.dest && (
            <button className="secondary small" onClick={() => api.showInFolder(t.dest ?? "").catch(onError)}>Show in folder</button>
          )}
        </div>
      </div>
      {t.via.kind === "localsend" && t.direction === "send" && t.state === "rejected" && /PIN/.test(t.reason) && (
        <PinRetry t={t} api={api} onError={onError} />
      )}
      {!finished(t) && t.state !== "waiting" && (
        <>
          <div className="bar" role="progressbar" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100}>
            <div style={{ width: `${pct}%` }} />
          </div>
          <div className="transfer-figures">
            <span>{pct.toFixed(1)}%</span>
            <span>{formatBytes(t.bytes_done)} of {formatBytes(t.bytes_total)}</span>
            <span>{t.files_done}/{t.files_total} files</span>
            <span>{formatBytes(t.speed_bps)}/s</span>
            <span>ETA {formatEta(t.eta_secs)}</span>
            {t.current && <span className="current" title={shown(t.current)}>{shown(t.current)}</span>}
          </div>
        </>
      )}
      {t.renamed_count > 0 && (
        <details className="notes">
          <summary>{t.renamed_count.toLocaleString()} renamed</summary>
          <FullList
            first={t.renamed}
            count={t.renamed_count}
            fetch={(offset) => api.renamedFiles(t.id, offset, PAGE)}
            item={(r) => <li key={r.id}><code>{shown(r.original)}</code> → <code>{shown(r.local)}</code> <span className="muted">({r.reason})</span></li>}
            onError={onError}
          />
        </details>
      )}
      {t.failed_count > 0 && (
        <details className="notes bad" open>
          <summary>{t.failed_count.toLocaleString()} failed</summary>
          <FullList
            first={t.failed}
            count={t.failed_count}
            fetch={(offset) => api.failedFiles(t.id, offset, PAGE)}
            item={(f) => <li key={f.path}><code>{shown(f.path)}</code> — {shown(f.reason)}</li>}
            onError={onError}
          />
        </details>
      )}
    </li>
  );
}

/** Entries fetched per "Show more". */
const PAGE = 500;

/**
 * A list that events carry only the start of (the engine's `spacedrop::preview`: at most 100
 * entries); the rest comes from the node's store a page at a time, on request.
 */
function FullList<T>({ first, count, fetch, item, onError }: {
  first: T[];
  count: number;
  fetch: (offset: number) => Promise<T[]>;
  item: (t: T) => ReactNode;
  onError: (e: unknown) => void;
}) {
  const [loaded, setLoaded] = useState<T[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [end, setEnd] = useState(false);
  const items = loaded && loaded.length >= first.length ? loaded : first;
  const left = end ? 0 : count - items.length;
  const more = () => {
    setBusy(true);
    fetch(items.length)
      .then((page) => {
        if (page.length === 0) setEnd(true);
        setLoaded([...items, ...page]);
      })
      .catch(onError)
      .finally(() => setBusy(false));
  };
  return (
    <ul>
      {items.map(item)}
      {left > 0 && (
        <li className="muted">
          <span>… and {left.toLocaleString()} more</span>{" "}
          <button className="ghost small" disabled={busy} onClick={more}>Show {Math.min(PAGE, left).toLocaleString()} more</button>
        </li>
      )}
    </ul>
  );
}

/** A member's file or folder being saved here (*Save to this device*). */
function DownloadRow({ d, api, onError }: { d: DownloadInfo; api: Api; onError: (e: unknown) => void }) {
  const p = d.progress;
  const pct = p.total_bytes > 0 ? (100 * p.bytes) / p.total_bytes : d.state === "done" ? 100 : 0;
  const label =
    d.state === "running" ? "Saving to this device" :
    d.state === "paused" ? "Paused by you" :
    d.state === "done" ? "Done · verified" :
    d.state === "failed" ? `Failed — ${shown(d.reason)}` : "Cancelled by you";
  const live = d.state === "running" || d.state === "paused";
  return (
    <li className={`transfer download ${d.state}`} data-download={d.id} aria-label={`Saving ${shown(d.name)} from ${shown(d.from)}`}>
      <div className="transfer-head">
        <span className="dir receive" aria-hidden>↓</span>
        <div className="transfer-title">
          <div>
            <strong>{shown(d.name)}</strong> from <strong>{shown(d.from)}</strong> · {p.total_files} file{p.total_files === 1 ? "" : "s"} · {formatBytes(p.total_bytes)}
          </div>
          <div className={`transfer-state ${d.state}`} data-state={d.state}>{label}</div>
        </div>
        <div className="transfer-actions">
          {d.state === "running" && <button className="secondary small" onClick={() => api.pauseDownload(d.id).catch(onError)}>Pause</button>}
          {(d.state === "paused" || d.state === "failed") && <button className="small" onClick={() => api.resumeDownload(d.id).catch(onError)}>Resume</button>}
          {(live || d.state === "failed") && <button className="danger small" onClick={() => api.cancelDownload(d.id).catch(onError)}>Cancel</button>}
          {d.state === "done" && <button className="secondary small" onClick={() => api.showInFolder(d.path).catch(onError)}>Show in folder</button>}
        </div>
      </div>
      {live && (
        <>
          <div className="bar" role="progressbar" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100}>
            <div style={{ width: `${pct}%` }} />
          </div>
          <div className="transfer-figures">
            <span>{pct.toFixed(1)}%</span>
            <span>{formatBytes(p.bytes)} of {formatBytes(p.total_bytes)}</span>
            <span>{p.files}/{p.total_files} files</span>
            {p.current && <span className="current" title={shown(p.current)}>{shown(p.current)}</span>}
          </div>
        </>
      )}
    </li>
  );
}

/** `onOlder`: lists the next page of older transfers (absent when there are none). */
export function Transfers({ transfers, downloads = [], api, onError, onOlder }: { transfers: TransferInfo[]; downloads?: DownloadInfo[]; api: Api; onError: (e: unknown) => void; onOlder?: () => void }) {
  return (
    <section className="panel" aria-labelledby="transfers">
      <div className="panel-head">
        <h2 id="transfers">Transfers</h2>
      </div>
      {transfers.length === 0 && downloads.length === 0 ? (
        <div className="empty small">
          <p className="muted">Nothing sent or received yet. Files you send or accept show up here with their progress.</p>
        </div>
      ) : (
        <ul className="transfers">
          {[...downloads].reverse().map((d) => <DownloadRow key={d.id} d={d} api={api} onError={onError} />)}
          {transfers.map((t) => <TransferRow key={t.id} t={t} api={api} onError={onError} />)}
        </ul>
      )}
      {onOlder && <button className="secondary small older" onClick={onOlder}>Show older transfers</button>}
    </section>
  );
}
