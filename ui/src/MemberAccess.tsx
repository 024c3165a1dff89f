// A member's device, through the node's command surface: *Open* runs commands on it (under
// what it granted this device), and the checkboxes are what this device grants it.

import { useCallback, useEffect, useState } from "react";
import type { Api } from "./api";
import type { Capability, GrantInfo, LibraryInfo, LocationInfo, MemberInfo, NodeStatus, RemoteAction, TransferInfo } from "./bindings";

const GRANTS: { cap: Capability; label: string }[] = [
  { cap: "manage", label: "May add, rescan and remove folders on this device" },
  { cap: "send", label: "May send files from this device's folders, and see its transfers" },
];

type Remote = {
  status: NodeStatus;
  locations: LocationInfo[];
  /** The member's transfers, or why they cannot be seen. */
  transfers: TransferInfo[] | string;
};

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function MemberAccess({ lib, member, api, onError }: { lib: LibraryInfo; member: MemberInfo; api: Api; onError: (e: unknown) => void }) {
  const who = member.name || member.short_id;
  const [grants, setGrants] = useState<GrantInfo[]>([]);
  const [log, setLog] = useState<RemoteAction[]>([]);
  const [remote, setRemote] = useState<Remote | null>(null);
  const [opening, setOpening] = useState(false);
  const [said, setSaid] = useState<string | null>(null);

  const loadGrants = useCallback(() => {
    api.control({ cmd: "grants", library: lib.id })
      .then((r) => {
        if (r.reply !== "grants") return;
        setGrants(r.grants.filter((g) => g.node === member.node));
        setLog(r.log.filter((a) => a.node === member.node).slice(0, 5));
      })
      .catch(onError);
  }, [api, lib.id, member.node, onError]);
  useEffect(loadGrants, [loadGrants]);

  const on = (command: Parameters<Api["control"]>[0]) => api.control({ cmd: "remote", node: member.node, library: lib.id, command });

  const open = async () => {
    setOpening(true);
    setSaid(null);
    try {
      const s = await on({ cmd: "status" });
      const l = await on({ cmd: "locations", library: lib.id });
      const transfers = await on({ cmd: "transfers" }).then(
        (r) => (r.reply === "transfers" ? r.transfers : []),
        (e) => message(e),
      );
      if (s.reply !== "status" || l.reply !== "locations") throw new Error("unexpected answer");
      setRemote({ status: s.status, locations: l.locations.filter((x) => x.local), transfers });
    } catch (e) {
      setSaid(`Cannot open ${who}: ${message(e)}`);
    } finally {
      setOpening(false);
    }
  };

  const rescan = (loc: LocationInfo) =>
    on({ cmd: "rescan_location", library: lib.id, location: loc.id }).then(
      () => setSaid(`${who} is rescanning ${loc.name}.`),
      (e) => setSaid(message(e)),
    );

  const toggle = (cap: Capability, give: boolean) =>
    api.control({ cmd: give ? "grant" : "revoke", library: lib.id, node: member.node, capability: cap }).then(loadGrants).catch(onError);

  return (
    <div className="member-access" aria-label={`Access for ${who}`}>
      <fieldset className="grants">
        <legend className="small-text">What {who} may do on this device (reading the library needs no grant)</legend>
        {GRANTS.map(({ cap, label }) => (
          <label key={cap} className="check small-text">
            <input type="checkbox" checked={grants.some((g) => g.capability === cap)} onChange={(e) => toggle(cap, e.target.checked)} aria-label={`${who}: ${cap}`} />
            {label}
          </label>
        ))}
        {log.length > 0 && (
          <ul className="remote-log muted small-text" aria-label={`What ${who} did here`}>
            {log.map((a) => (
              <li key={`${a.at}-${a.command}-${a.outcome}`}>
                {new Date(a.at * 1000).toLocaleTimeString()} · {a.command.replace(/_/g, " ")} · {a.outcome}
              </li>
            ))}
          </ul>
        )}
      </fieldset>
      <div className="row">
        <button className="secondary small" onClick={open} disabled={opening} aria-label={`Open ${who}`}>
          {opening ? "Opening…" : remote ? `Refresh ${who}` : `Open ${who}`}
        </button>
        {said && <span className="small-text" role="status">{said}</span>}
      </div>
      {remote && (
        <div className="remote-node" aria-label={`${who}'s device`}>
          <p className="muted small-text">
            {remote.status.name} · Ferry {remote.status.version}
          </p>
          {remote.locations.length === 0 ? (
            <p className="muted small-text">No folders of its own in this library.</p>
          ) : (
            <ul className="remote-locations">
              {remote.locations.map((l) => (
                <li key={l.id} className="small-text" data-remote-location={l.id}>
                  <strong>{l.name}</strong> <span className="muted">{l.path}</span> · {l.files} files · {l.online ? l.state : "offline"}
                  <button className="ghost small" onClick={() => rescan(l)} aria-label={`Rescan ${l.name} on ${who}`}>Rescan</button>
                </li>
              ))}
            </ul>
          )}
          <p className="muted small-text" aria-label={`${who}'s transfers`}>
            {typeof remote.transfers === "string"
              ? `Transfers: ${remote.transfers}`
              : `${remote.transfers.length} transfer${remote.transfers.length === 1 ? "" : "s"}, ${remote.transfers.filter((t) => !["done", "failed", "cancelled", "rejected"].includes(t.state)).length} active`}
          </p>
        </div>
      )}
    </div>
  );
}
