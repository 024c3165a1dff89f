import { useState } from "react";
import type { Api } from "./api";
import type { Settings } from "./bindings";

export function SettingsDialog({ settings, api, onClose, onSaved, onError }: { settings: Settings; api: Api; onClose: () => void; onSaved: (s: Settings) => void; onError: (e: unknown) => void }) {
  const [s, setS] = useState(settings);
  const [interfaces, setInterfaces] = useState(settings.interfaces.join(", "));
  const [saving, setSaving] = useState(false);
  const save = () => {
    setSaving(true);
    const next = { ...s, interfaces: interfaces.split(",").map((i) => i.trim()).filter(Boolean) };
    api
      .saveSettings(next)
      .then(onSaved)
      .catch(onError)
      .finally(() => setSaving(false));
  };
  return (
    <div className="overlay" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <form className="dialog settings" role="dialog" aria-modal="true" aria-labelledby="settings-title" onSubmit={(e) => { e.preventDefault(); save(); }} onKeyDown={(e) => e.key === "Escape" && onClose()}>
        <h3 id="settings-title">Settings</h3>
        <label htmlFor="set-name">Display name</label>
        <input id="set-name" value={s.name} placeholder="This computer's name" onChange={(e) => setS({ ...s, name: e.target.value })} autoFocus />
        <label htmlFor="set-dir">Download folder</label>
        <div className="row">
          <input id="set-dir" value={s.download_dir} onChange={(e) => setS({ ...s, download_dir: e.target.value })} spellCheck={false} />
          <button type="button" className="secondary" onClick={() => api.pickFolder().then((d) => d && setS({ ...s, download_dir: d })).catch(onError)}>Choose…</button>
        </div>
        <label className="check">
          <input type="checkbox" checked={s.discovery} onChange={(e) => setS({ ...s, discovery: e.target.checked })} />
          Find nearby devices automatically (mDNS)
        </label>
        <label className="check">
          <input type="checkbox" checked={s.localsend} onChange={(e) => setS({ ...s, localsend: e.target.checked })} />
          Receive from LocalSend devices (phones and computers running LocalSend)
        </label>
        <label htmlFor="set-ls-pin">PIN LocalSend senders must give</label>
        <input id="set-ls-pin" value={s.localsend_pin} placeholder="No PIN" disabled={!s.localsend} onChange={(e) => setS({ ...s, localsend_pin: e.target.value })} autoComplete="off" spellCheck={false} />
        <label className="check">
          <input id="set-previews" type="checkbox" checked={s.preview_sync} onChange={(e) => setS({ ...s, preview_sync: e.target.checked })} />
          Keep copies of other members' thumbnails, so their pictures show while they are offline
        </label>
        <label htmlFor="set-preview-cap">Space for thumbnails (MiB)</label>
        <input id="set-preview-cap" type="number" min={16} step={16} value={s.preview_cap_mib} disabled={!s.preview_sync} onChange={(e) => setS({ ...s, preview_cap_mib: Math.max(16, Math.floor(Number(e.target.value) || 0)) })} />
        <label htmlFor="set-history-days">Keep finished transfers in the list for (days)</label>
        <input id="set-history-days" type="number" min={1} value={s.history_days ?? 30} onChange={(e) => setS({ ...s, history_days: Math.max(1, Math.floor(Number(e.target.value) || 0)) })} />
        <label htmlFor="set-history-count">Keep at most (finished transfers)</label>
        <input id="set-history-count" type="number" min={1} step={100} value={s.history_count ?? 1000} onChange={(e) => setS({ ...s, history_count: Math.max(1, Math.floor(Number(e.target.value) || 0)) })} />
        <label htmlFor="set-if">Network interfaces for discovery</label>
        <input id="set-if" value={interfaces} placeholder="All interfaces" disabled={!s.discovery} onChange={(e) => setInterfaces(e.target.value)} spellCheck={false} />
        <label htmlFor="set-theme">Theme</label>
        <select id="set-theme" value={s.theme} onChange={(e) => setS({ ...s, theme: e.target.value as Settings["theme"] })}>
          <option value="system">Follow the system</option>
          <option value="light">Light</option>
          <option value="dark">Dark</option>
        </select>
        <div className="dialog-actions">
          <button type="button" className="secondary" onClick={onClose}>Cancel</button>
          <button type="submit" disabled={saving}>{saving ? "Saving…" : "Save"}</button>
        </div>
      </form>
    </div>
  );
}
