// The arithmetic of the virtualised thumbnail grid: which cells are on screen, and which pages
// of the folder's listing they need. Pure, so it is unit-tested without a DOM.

export type Cell = { width: number; height: number };

export type Window = {
  /** Cells per row. */
  cols: number;
  /** Height of the whole grid, in px (what the scrollbar spans). */
  height: number;
  /** Indexes `first..last` (exclusive) are rendered. */
  first: number;
  last: number;
};

/** The cells to render for a viewport, plus `overscan` rows above and below. */
export function visible(total: number, width: number, scrollTop: number, viewHeight: number, cell: Cell, overscan = 2): Window {
  const cols = Math.max(1, Math.floor(width / cell.width));
  const rows = Math.ceil(total / cols);
  const firstRow = Math.max(0, Math.floor(scrollTop / cell.height) - overscan);
  const lastRow = Math.min(rows, Math.ceil((scrollTop + viewHeight) / cell.height) + overscan);
  return { cols, height: rows * cell.height, first: Math.min(total, firstRow * cols), last: Math.min(total, lastRow * cols) };
}

/** Where cell `i` sits. */
export function position(i: number, cols: number, cell: Cell): { x: number; y: number } {
  return { x: (i % cols) * cell.width, y: Math.floor(i / cols) * cell.height };
}

/** The pages (of `size` entries) that cover indexes `first..last`. */
export function pagesFor(first: number, last: number, size: number): number[] {
  if (last <= first) return [];
  const out = [];
  for (let p = Math.floor(first / size); p <= Math.floor((last - 1) / size); p++) out.push(p);
  return out;
}

/** The scrollTop that brings cell `i` into view (unchanged when it already is). */
export function scrollToShow(i: number, cols: number, cell: Cell, scrollTop: number, viewHeight: number): number {
  const top = Math.floor(i / cols) * cell.height;
  if (top < scrollTop) return top;
  if (top + cell.height > scrollTop + viewHeight) return top + cell.height - viewHeight;
  return scrollTop;
}

/** `a/b/c` → the crumbs `[["a","a"],["b","a/b"],["c","a/b/c"]]`. */
export function crumbs(dir: string): [string, string][] {
  const parts = dir.split("/").filter(Boolean);
  return parts.map((name, i) => [name, parts.slice(0, i + 1).join("/")]);
}

const IMAGE = /\.(jpe?g|png|gif|webp|avif|bmp|ico)$/i;
const VIDEO = /\.(mp4|m4v|webm|mov|ogv)$/i;
const AUDIO = /\.(mp3|m4a|ogg|oga|opus|wav|flac)$/i;

/** What the details pane can preview inline, from the name (the scheme sets the type). */
export function previewKind(name: string): "image" | "video" | "audio" | null {
  if (IMAGE.test(name)) return "image";
  if (VIDEO.test(name)) return "video";
  if (AUDIO.test(name)) return "audio";
  return null;
}

/**
 * Whether the click numbered `detail` in a run of clicks (the browser's count) opens what it
 * hits: every second one. Double-clicking a folder and then at once the tile that takes its
 * place is one run of four clicks, which fires no second `dblclick`.
 */
export function opensOn(detail: number): boolean {
  return detail >= 2 && detail % 2 === 0;
}
