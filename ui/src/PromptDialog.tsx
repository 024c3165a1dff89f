import { useEffect, useRef, useState } from "react";
import type { Prompt } from "./bindings";
import { formatBytes } from "./state";
import { shown } from "./text";

/** A Spacedrop offer: who (with the verified fingerprint), what, and how long is left. */
export function PromptDialog({ prompt, more, onAnswer }: { prompt: Prompt; more: number; onAnswer: (accept: boolean, chooseFolder: boolean) => void }) {
  const [deadline] = useState(() => Date.now() + prompt.expires_in_ms);
  const [left, setLeft] = useState(Math.ceil(prompt.expires_in_ms / 1000));
  const accept = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    accept.current?.focus();
    const t = setInterval(() => setLeft(Math.max(0, Math.ceil((deadline - Date.now()) / 1000))), 250);
    return () => clearInterval(t);
  }, [deadline]);
  const who = prompt.peer_name || "A nearby device";
  return (
    <div className="overlay">
      <div className="dialog prompt" role="dialog" aria-modal="true" aria-labelledby="prompt-title" onKeyDown={(e) => e.key === "Escape" && onAnswer(false, false)}>
        <h3 id="prompt-title">{who} wants to send you {prompt.files} file{prompt.files === 1 ? "" : "s"}</h3>
        {prompt.via.kind === "localsend" ? (
          // Not a Ferry identity: say what its fingerprint is worth.
          <p className="localsend" title={`Certificate SHA-256 ${prompt.via.fingerprint}`}>
            <span className="badge">LocalSend</span> {prompt.via.address} · certificate{" "}
            <code className="fp">{prompt.peer_short}</code>{" "}
            {prompt.via.verified ? "shown" : "claimed, not shown"} · not a paired or Ferry-verified device
          </p>
        ) : (
          <p className="verified" title={`Fingerprint ${prompt.peer}`}>
            Verified device <code className="fp">{prompt.peer_short}</code>
          </p>
        )}
        <div className="offer">
          <div className="size">{formatBytes(prompt.bytes)}</div>
          <div>
            <ul className="names">
              {prompt.first_names.map((n) => <li key={n}>{shown(n)}</li>)}
              {prompt.files > prompt.first_names.length && <li className="muted">…</li>}
            </ul>
            {prompt.folders > 0 && prompt.first_files.length > 0 && (
              <div className="inside">
                <div className="muted">in {prompt.folders} folder{prompt.folders === 1 ? "" : "s"}:</div>
                <ul className="names">
                  {prompt.first_files.map((n) => <li key={n}>{shown(n)}</li>)}
                  {prompt.files > prompt.first_files.length && <li className="muted">…</li>}
                </ul>
              </div>
            )}
          </div>
        </div>
        <div className="countdown" aria-live="off">Declined automatically in {left}s{more > 0 ? ` · ${more} more waiting` : ""}</div>
        <div className="dialog-actions">
          <button className="danger" onClick={() => onAnswer(false, false)}>Reject</button>
          <button className="secondary" onClick={() => onAnswer(true, true)}>Accept to…</button>
          <button ref={accept} onClick={() => onAnswer(true, false)}>Accept</button>
        </div>
      </div>
    </div>
  );
}
