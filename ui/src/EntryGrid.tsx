import { memo, useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { Api } from "./api";
import type { EntryInfo } from "./bindings";
import { opensOn, pagesFor, position, scrollToShow, visible } from "./grid";
import { shown } from "./text";

/** Entries fetched per request: a screenful or two. */
export const PAGE = 256;
const CELL_MIN_WIDTH = 136;
const CELL_HEIGHT = 164;
/** At most this often, a folder whose entries changed is fetched again. */
const REFRESH_MS = 400;

/**
 * A folder's listing, a page at a time: only the pages the grid shows are fetched, and when
 * the folder changes on disk those are fetched again (others are dropped). One instance per
 * folder (the grid is keyed by it), so an answer never lands in another folder's view.
 */
function usePagedListing(api: Api, library: string, location: string, dir: string, changed: number, onError: (e: unknown) => void) {
  const [total, setTotal] = useState<number | null>(null);
  const [pages, setPages] = useState<Map<number, EntryInfo[]>>(new Map());
  const generation = useRef(0);
  const inflight = useRef(new Set<number>());
  const wanted = useRef<number[]>([0]);

  const fetchPage = useCallback(
    (page: number) => {
      if (inflight.current.has(page)) return;
      inflight.current.add(page);
      const gen = generation.current;
      api
        .listEntries(library, location, dir, page * PAGE, PAGE)
        .then((r) => {
          if (gen !== generation.current) return;
          setTotal(r.total);
          setPages((m) => new Map(m).set(page, r.entries));
        })
        .catch((e) => gen === generation.current && onError(e))
        .finally(() => gen === generation.current && inflight.current.delete(page));
    },
    [api, library, location, dir, onError],
  );

  useEffect(() => fetchPage(0), [fetchPage]);

  // The folder changed on disk: fetch what is on screen again, throttled.
  const last = useRef(0);
  const handled = useRef(changed);
  useEffect(() => {
    if (changed === handled.current) return;
    const refresh = () => {
      handled.current = changed;
      last.current = Date.now();
      generation.current++;
      inflight.current = new Set();
      const keep = wanted.current.length ? wanted.current : [0];
      setPages((m) => new Map([...m].filter(([p]) => keep.includes(p))));
      keep.forEach(fetchPage);
    };
    const wait = last.current + REFRESH_MS - Date.now();
    if (wait <= 0) {
      refresh();
      return;
    }
    const t = setTimeout(refresh, wait);
    return () => clearTimeout(t);
  }, [changed, fetchPage]);

  const ensure = useCallback(
    (first: number, lastIndex: number) => {
      wanted.current = pagesFor(first, lastIndex, PAGE);
      for (const p of wanted.current) if (!pages.has(p)) fetchPage(p);
    },
    [pages, fetchPage],
  );

  const at = (i: number) => pages.get(Math.floor(i / PAGE))?.[i % PAGE];
  return { total, at, ensure, pages };
}

function FolderIcon() {
  return (
    <svg viewBox="0 0 48 48" className="kind-icon folder" aria-hidden>
      <path d="M4 12a4 4 0 0 1 4-4h11l4 5h17a4 4 0 0 1 4 4v19a4 4 0 0 1-4 4H8a4 4 0 0 1-4-4z" fill="currentColor" />
    </svg>
  );
}

function FileIcon({ name }: { name: string }) {
  const dot = name.lastIndexOf(".");
  const ext = dot > 0 && name.length - dot <= 6 ? name.slice(dot + 1).toUpperCase() : "";
  return (
    <span className="kind-icon file" aria-hidden>
      <svg viewBox="0 0 48 48">
        <path d="M12 4h17l11 11v27a2 2 0 0 1-2 2H12a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z" fill="currentColor" opacity="0.18" />
        <path d="M29 4v9a2 2 0 0 0 2 2h9" fill="none" stroke="currentColor" strokeWidth="2" opacity="0.5" />
      </svg>
      {ext && <span className="ext">{ext}</span>}
    </span>
  );
}

/**
 * One entry. Memoised and without handlers of its own (the grid delegates clicks by
 * `data-index`), so scrolling re-renders only the tiles that come into view.
 */
const Tile = memo(function Tile({ e, index, thumb, selected }: { e: EntryInfo; index: number; thumb: string | null; selected: boolean }) {
  // Tiles come and go as the grid scrolls, so they never take focus: the grid keeps it, and
  // with it the arrow keys.
  // A member's thumbnail can be unavailable (its device offline, none made): show the icon.
  const [failed, setFailed] = useState<string | null>(null);
  const src = thumb && thumb !== failed ? thumb : null;
  return (
    <button
      className={`tile${selected ? " selected" : ""}${e.error ? " has-error" : ""}`}
      data-index={index}
      data-entry={e.id}
      data-kind={e.kind}
      aria-label={shown(e.name)}
      aria-pressed={selected}
      title={e.error ? `${shown(e.name)}\n${e.error}` : shown(e.name)}
      tabIndex={-1}
    >
      <span className="tile-thumb">
        {src ? <img src={src} alt="" loading="lazy" decoding="async" draggable={false} onError={() => setFailed(src)} /> : e.kind === "dir" ? <FolderIcon /> : <FileIcon name={e.name} />}
      </span>
      <span className="tile-name">{shown(e.name)}</span>
    </button>
  );
});

/**
 * The thumbnails of one folder, virtualised: only the rows on screen (and two more each way)
 * are in the DOM, and only their pages are fetched, so a folder of 100,000 files scrolls as
 * smoothly as one of 100. Arrow keys move the selection, Enter opens, Backspace goes up.
 */
export function EntryGrid({
  api, library, location, dir, changed, indexing, selected, onSelect, onOpen, onUp, onError,
}: {
  api: Api;
  library: string;
  location: string;
  dir: string;
  changed: number;
  /** The location is still being indexed: an empty answer may not be the last word. */
  indexing: boolean;
  selected: string | null;
  onSelect: (e: EntryInfo) => void;
  onOpen: (e: EntryInfo) => void;
  onUp: () => void;
  onError: (e: unknown) => void;
}) {
  const { total, at, ensure, pages } = usePagedListing(api, library, location, dir, changed, onError);
  const scroller = useRef<HTMLDivElement>(null);
  // `top` is kept in whole rows: scrolling within a row (the overscan covers it) renders nothing.
  const [view, setView] = useState({ width: 900, height: 600, top: 0 });

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => el.clientWidth > 0 && setView((v) => ({ ...v, width: el.clientWidth, height: el.clientHeight }));
    measure();
    if (typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const count = total ?? 0;
  const w = visible(count, view.width, view.top, view.height, { width: CELL_MIN_WIDTH, height: CELL_HEIGHT });
  const cell = { width: Math.floor(view.width / w.cols), height: CELL_HEIGHT };

  useEffect(() => ensure(w.first, w.last), [ensure, w.first, w.last]);

  // The keyboard cursor: the selected entry's index, kept even when it scrolls out of view;
  // `pending` is a key press's target whose page is still on its way.
  const [cursor, setCursor] = useState(-1);
  const pending = useRef(-1);
  useEffect(() => {
    const e = pending.current >= 0 ? at(pending.current) : undefined;
    if (e) {
      pending.current = -1;
      onSelect(e);
    }
  }, [pages]); // eslint-disable-line react-hooks/exhaustive-deps
  const selectedIndex = selected && at(cursor)?.id === selected ? cursor : -1;
  const select = (i: number, e: EntryInfo) => {
    setCursor(i);
    onSelect(e);
    scroller.current?.focus({ preventScroll: true });
  };

  const onKey = (ev: React.KeyboardEvent) => {
    if (ev.key === "Backspace") {
      ev.preventDefault();
      onUp();
      return;
    }
    const current = selectedIndex >= 0 ? at(selectedIndex) : undefined;
    if (ev.key === "Enter" && current) {
      ev.preventDefault();
      onOpen(current);
      return;
    }
    const steps: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: w.cols, ArrowUp: -w.cols };
    if (count === 0 || !(ev.key in steps || ev.key === "Home" || ev.key === "End")) return;
    ev.preventDefault();
    const next =
      ev.key === "Home" ? 0
      : ev.key === "End" ? count - 1
      : selectedIndex < 0 ? 0
      : Math.max(0, Math.min(count - 1, selectedIndex + steps[ev.key]));
    const el = scroller.current;
    if (el) el.scrollTop = scrollToShow(next, w.cols, cell, el.scrollTop, el.clientHeight);
    setCursor(next);
    // The target's page may not be loaded yet; it is selected when it arrives.
    const target = at(next);
    if (target) {
      pending.current = -1;
      onSelect(target);
    } else {
      pending.current = next;
      ensure(next, next + 1);
    }
  };

  const tileAt = (ev: React.MouseEvent) => {
    const el = (ev.target as HTMLElement).closest<HTMLElement>("[data-index]");
    const i = el ? Number(el.dataset.index) : -1;
    const e = i >= 0 ? at(i) : undefined;
    return e ? { i, e } : null;
  };

  const cells = [];
  for (let i = w.first; i < w.last; i++) {
    const e = at(i);
    const { x, y } = position(i, w.cols, cell);
    const style = { transform: `translate(${x}px, ${y}px)`, width: cell.width, height: cell.height };
    cells.push(
      e ? (
        <div className="cell" key={e.id} style={style}>
          <Tile e={e} index={i} thumb={e.thumb && e.cas ? api.contentUrl("thumb", library, e.cas) : null} selected={e.id === selected} />
        </div>
      ) : (
        <div className="cell" key={`i${i}`} style={style}>
          <span className="tile placeholder" />
        </div>
      ),
    );
  }

  return (
    <div
      className="grid-scroll"
      ref={scroller}
      tabIndex={0}
      role="grid"
      aria-label="Folder contents"
      aria-rowcount={Math.ceil(count / w.cols)}
      data-total={total ?? ""}
      onKeyDown={onKey}
      onMouseDown={(ev) => tileAt(ev) && ev.preventDefault()}
      // A double click opens: every second click of a run (`detail` 2, 4, …), not the
      // `dblclick` event. Double-clicking a folder and at once the tile that takes its place
      // (the first of the new folder) is one run of four clicks to the browser, which fires
      // no second `dblclick`.
      onClick={(ev) => {
        const t = tileAt(ev);
        if (!t) return;
        select(t.i, t.e);
        if (opensOn(ev.detail)) onOpen(t.e);
      }}
      onScroll={(ev) => {
        const top = Math.floor((ev.target as HTMLDivElement).scrollTop / CELL_HEIGHT) * CELL_HEIGHT;
        setView((v) => (v.top === top ? v : { ...v, top }));
      }}
    >
      {total === 0 ? (
        <p className="empty muted">{indexing ? "Indexing… what is found appears here." : "This folder is empty."}</p>
      ) : (
        <div className="grid-inner" style={{ height: w.height }}>
          {cells}
        </div>
      )}
    </div>
  );
}
