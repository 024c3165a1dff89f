import { describe, expect, it } from "vitest";
import { crumbs, opensOn, pagesFor, position, previewKind, scrollToShow, visible } from "./grid";

const cell = { width: 100, height: 150 };

describe("the virtual grid", () => {
  it("renders only the rows on screen, plus two each way", () => {
    const w = visible(100_000, 1000, 0, 600, cell);
    expect(w.cols).toBe(10);
    expect(w.height).toBe(10_000 * 150);
    expect([w.first, w.last]).toEqual([0, 60]);
    const deep = visible(100_000, 1000, 1_000_000, 600, cell);
    expect(deep.first).toBe((Math.floor(1_000_000 / 150) - 2) * 10);
    expect(deep.last - deep.first).toBeLessThanOrEqual(90);
  });

  it("never renders past the end, and copes with a tiny window", () => {
    expect(visible(7, 1000, 0, 600, cell)).toMatchObject({ cols: 10, first: 0, last: 7, height: 150 });
    expect(visible(0, 1000, 0, 600, cell)).toMatchObject({ first: 0, last: 0, height: 0 });
    expect(visible(50, 30, 0, 600, cell).cols).toBe(1);
  });

  it("places cells row by row", () => {
    expect(position(0, 10, cell)).toEqual({ x: 0, y: 0 });
    expect(position(23, 10, cell)).toEqual({ x: 300, y: 300 });
  });

  it("asks for the pages that cover what is shown", () => {
    expect(pagesFor(0, 60, 256)).toEqual([0]);
    expect(pagesFor(250, 300, 256)).toEqual([0, 1]);
    expect(pagesFor(512, 512, 256)).toEqual([]);
    expect(pagesFor(511, 513, 256)).toEqual([1, 2]);
  });

  it("scrolls just enough to show a cell", () => {
    expect(scrollToShow(5, 10, cell, 0, 600)).toBe(0);
    expect(scrollToShow(45, 10, cell, 0, 600)).toBe(150);
    expect(scrollToShow(0, 10, cell, 900, 600)).toBe(0);
  });

  it("splits a folder path into crumbs, and knows what it can preview", () => {
    expect(crumbs("")).toEqual([]);
    expect(crumbs("a/b c/d")).toEqual([["a", "a"], ["b c", "a/b c"], ["d", "a/b c/d"]]);
    expect(previewKind("IMG_1.JPG")).toBe("image");
    expect(previewKind("clip.webm")).toBe("video");
    expect(previewKind("song.flac")).toBe("audio");
    expect(previewKind("notes.txt")).toBeNull();
  });

  it("opens on every second click of a run, so a quick double click into a folder and on again works", () => {
    expect([1, 2, 3, 4, 5, 6].map(opensOn)).toEqual([false, true, false, true, false, true]);
    expect(opensOn(0)).toBe(false); // a click from the keyboard or a script
  });
});
