//! The characters that never reach a screen as they are. Names, reasons and device names come
//! from peers; shown raw, a control character rewrites a terminal (an escape sequence), a
//! line or paragraph separator fakes a second line, and invisible formatting disguises one
//! name as another (`invoice\u{202e}fdp.exe` reads as "invoiceexe.pdf").
//!
//! [`HIDDEN`] is the one list: device names lose these characters when they arrive
//! (`ferry_p2p::hello`), LocalSend aliases too, library and member names holding one are refused, and the CLI and the app
//! show them escaped (`\u{202e}`). The app's copy, in `ui/src/text.ts`, is checked against this
//! list by a test here.

use std::borrow::Cow;
use std::ops::RangeInclusive;

/// Every hidden character, as ranges in ascending order.
pub const HIDDEN: &[RangeInclusive<char>] = &[
    '\u{0}'..='\u{1f}',      // C0 controls
    '\u{7f}'..='\u{9f}',     // DEL and C1 controls
    '\u{ad}'..='\u{ad}',     // soft hyphen
    '\u{61c}'..='\u{61c}',   // Arabic letter mark
    '\u{200b}'..='\u{200f}', // zero-width space, non-joiner, joiner; LRM, RLM
    '\u{2028}'..='\u{202e}', // line and paragraph separators; bidi embeddings and overrides
    '\u{2060}'..='\u{2064}', // word joiner, invisible operators
    '\u{2066}'..='\u{206f}', // bidi isolates, deprecated format characters
    '\u{feff}'..='\u{feff}', // zero-width no-break space (BOM)
    '\u{fff9}'..='\u{fffb}', // interlinear annotation
];

/// Whether `c` is in [`HIDDEN`].
pub fn is_hidden(c: char) -> bool {
    HIDDEN.iter().any(|r| r.contains(&c))
}

/// `s` with every hidden character but those in `keep` written as `\u{..}`. Borrowed when
/// nothing needs escaping.
pub fn escaped<'a>(s: &'a str, keep: &[char]) -> Cow<'a, str> {
    let hide = |c: char| is_hidden(c) && !keep.contains(&c);
    if !s.chars().any(hide) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hide(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`HIDDEN`] as the character class of a JavaScript regular expression, as `ui/src/text.ts`
/// spells it.
pub fn js_class() -> String {
    let mut class = String::from("[");
    for r in HIDDEN {
        class += &format!("\\u{:04x}", u32::from(*r.start()));
        if r.start() != r.end() {
            class += &format!("-\\u{:04x}", u32::from(*r.end()));
        }
    }
    class + "]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_holds_what_disguises_text() {
        assert!(HIDDEN.windows(2).all(|w| w[0].end() < w[1].start()));
        for c in [
            '\u{1b}', '\n', '\u{9b}', '\u{200b}', '\u{202e}', '\u{2028}', '\u{2029}',
        ] {
            assert!(is_hidden(c), "{:?}", c);
        }
        for c in ['a', ' ', 'é', '🦀', '\u{2027}', '\u{2030}'] {
            assert!(!is_hidden(c), "{:?}", c);
        }
        // Every control character (Unicode Cc) is in it.
        assert!(('\0'..='\u{10ffff}')
            .filter(|c| c.is_control())
            .all(is_hidden));
    }

    #[test]
    fn escaping_keeps_what_it_is_told_to() {
        assert!(matches!(escaped("photo.jpg", &[]), Cow::Borrowed(_)));
        assert_eq!(escaped("a\u{200b}b\u{2028}c", &[]), "a\\u{200b}b\\u{2028}c");
        assert_eq!(escaped("a\nb\tc", &['\n']), "a\nb\\u{9}c");
    }

    /// The app escapes with its own regular expression; it must be this list.
    #[test]
    fn the_apps_copy_is_this_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/src/text.ts");
        let ts = std::fs::read_to_string(path).expect("ui/src/text.ts");
        let line = format!("const HIDDEN = /{}/g;", js_class());
        assert!(
            ts.lines().any(|l| l.trim() == line),
            "ui/src/text.ts must define, matching ferry_util::text::HIDDEN:\n{line}"
        );
    }
}
