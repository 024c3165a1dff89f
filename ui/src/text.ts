/**
 * Text a peer chose — file and folder names, library names, reasons — as the app shows it:
 * control characters and invisible formatting become visible escapes (`\u{202e}`), as the CLI
 * prints them. Shown raw, "invoice\u202Efdp.exe" reads as "invoiceexe.pdf" in an offer or a
 * remote library, and a newline fakes a second line. (Device names are cleaned when they
 * arrive; library names with such characters are refused on the wire.)
 */
// The characters ferry_util::text::HIDDEN lists (a Rust test there checks this line): C0 and C1
// controls, soft hyphen, zero-width and bidi marks, line and paragraph separators, overrides
// and isolates, BOM, interlinear annotation.
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]/g;

export function shown(s: string): string {
  return s.replace(HIDDEN, (c) => `\\u{${c.codePointAt(0)?.toString(16) ?? ""}}`);
}
