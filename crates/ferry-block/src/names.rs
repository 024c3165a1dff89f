//! Turning relative paths from a peer into safe local names.
//!
//! A manifest comes from a peer that may be hostile, so no name in it is trusted. (The
//! original Spacedrive joined peer-supplied names onto the destination unchecked, so
//! `../../.bashrc` could write outside it.) Rules, applied in order:
//!
//! 1. **Wire** ([`validate_wire_path`]): a path that breaks the protocol refuses the whole
//!    manifest. That means no components, more than [`MAX_DEPTH`] of them, or a component that
//!    is empty, `.`, `..`, contains `/`, `\` or NUL, or is over [`MAX_WIRE_COMPONENT`] bytes.
//! 2. **Local names** ([`sanitize_component`]): a name that is valid but awkward is renamed
//!    and the change reported, never refused:
//!    - all OSes: characters below U+0020 become `_` (they break terminals and file managers);
//!      `/` and `\` also become `_`, so the function is safe even on input that skipped step 1;
//!    - Windows: `<>:"|?*` become `_`, trailing dots and spaces are trimmed (`_` if nothing is
//!      left, so `...` never becomes `""`, `.` or `..`). A device name (CON, PRN, AUX, NUL,
//!      CONIN$, CONOUT$, COM0-9, LPT0-9, COM¹²³, LPT¹²³) in any case gets a `_` prefix:
//!      `con.txt` becomes `_con.txt`. A name counts as a device name when the part before its
//!      first dot, with trailing spaces removed, is one of these, which catches `CON .txt` too;
//!    - length: at most [`MAX_NAME`] units (UTF-8 bytes on Unix, UTF-16 units on Windows). The
//!      cut falls on a `char` boundary, so it never splits a UTF-8 sequence or a surrogate pair.
//!      It keeps the extension when one exists (see below), and nothing is appended;
//!    - as a last guard, `""`, `.` and `..` become `_`.
//! 3. **Collisions** ([`unique_name`]): `name (1).ext`, `name (2).ext`, ... up to
//!    [`MAX_TRIES`], cutting the stem to make room for the tag.
//!
//! The extension is the text after the last `.`, when the stem is non-empty and that text is
//! at most [`MAX_EXT`] chars. `.tar` before it is kept as well: `a.tar.gz` gives `a (1).tar.gz`.
//! A dotfile such as `.bashrc` has no extension.
//!
//! Not handled here: names that differ only in case or Unicode normalization (Windows,
//! macOS). For those, the `taken` predicate passed to [`unique_name`] should ask the
//! filesystem. Create files with `create_new` so that a symlink already at the destination is
//! not followed. Sanitize for [`Os::current`]: names sanitized for Unix are not safe to join on
//! Windows (`C:` is a drive prefix there).

/// Longest component accepted on the wire, in bytes.
pub const MAX_WIRE_COMPONENT: usize = 1024;
/// Most components accepted in one path.
pub const MAX_DEPTH: usize = 64;
/// Longest local name: bytes on Unix, UTF-16 units on Windows.
pub const MAX_NAME: usize = 255;
/// Longest extension (in chars) that shortening and collision renaming keep.
pub const MAX_EXT: usize = 16;
/// How many numbered names [`unique_name`] tries before giving up.
pub const MAX_TRIES: u32 = 10_000;
/// Windows' legacy path limit in UTF-16 units, counting the terminating NUL.
pub const WINDOWS_MAX_PATH: usize = 260;

/// The rules for names on the receiving OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and macOS.
    Unix,
    Windows,
}

impl Os {
    pub const fn current() -> Os {
        if cfg!(windows) {
            Os::Windows
        } else {
            Os::Unix
        }
    }

    fn char_len(self, c: char) -> usize {
        match self {
            Os::Unix => c.len_utf8(),
            Os::Windows => c.len_utf16(),
        }
    }

    /// Length as this OS measures it against [`MAX_NAME`].
    pub fn name_len(self, s: &str) -> usize {
        s.chars().map(|c| self.char_len(c)).sum()
    }
}

/// Why a name from the peer was changed, for telling the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// Longer than [`MAX_NAME`].
    Shortened,
    /// A Windows device name; `_` was added in front.
    Reserved,
    /// Control characters or characters the OS forbids were replaced with `_`.
    IllegalChars,
    /// Trailing dots or spaces were trimmed (Windows).
    Trailing,
    /// `""`, `.` or `..` became `_`. Only input that skipped [`validate_wire_path`] gets this.
    DotName,
}

/// A protocol violation in a peer's path: the manifest is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("path has no components")]
    EmptyPath,
    #[error("empty path component")]
    Empty,
    #[error("path component is \".\" or \"..\"")]
    DotOrDotDot,
    #[error("path component contains '/' or '\\'")]
    Separator,
    #[error("path component contains NUL")]
    Nul,
    #[error("path component is {len} bytes, max {max}")]
    TooLong { len: usize, max: usize },
    #[error("path has {depth} components, max {max}")]
    TooDeep { depth: usize, max: usize },
}

/// One component that [`safe_relative_path`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameNote {
    pub index: usize,
    pub original: String,
    pub renamed: String,
    pub reasons: Vec<Rename>,
}

impl Rename {
    /// Says what happened, for the person whose file it is.
    pub fn describe(self) -> &'static str {
        match self {
            Rename::Shortened => "the name was too long for this system and was shortened",
            Rename::Reserved => "the name is reserved on Windows",
            Rename::IllegalChars => "the name had characters this system cannot hold",
            Rename::Trailing => "Windows does not allow trailing dots or spaces",
            Rename::DotName => "the name was empty or a dot name",
        }
    }
}

impl RenameNote {
    pub fn describe(&self) -> String {
        self.reasons
            .iter()
            .map(|r| r.describe())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Checks a peer's path at the protocol level (rule 1 in the module docs).
pub fn validate_wire_path(components: &[String]) -> Result<(), NameError> {
    let (depth, max) = (components.len(), MAX_DEPTH);
    match depth {
        0 => return Err(NameError::EmptyPath),
        _ if depth > max => return Err(NameError::TooDeep { depth, max }),
        _ => {}
    }
    components.iter().try_for_each(|c| match c.as_str() {
        "" => Err(NameError::Empty),
        "." | ".." => Err(NameError::DotOrDotDot),
        _ if c.len() > MAX_WIRE_COMPONENT => Err(NameError::TooLong {
            len: c.len(),
            max: MAX_WIRE_COMPONENT,
        }),
        _ if c.contains(['/', '\\']) => Err(NameError::Separator),
        _ if c.contains('\0') => Err(NameError::Nul),
        _ => Ok(()),
    })
}

/// Maps one component to a name `os` can hold (rule 2), returning it with the reasons it
/// changed (an empty list when it did not). Safe on any input, and idempotent.
pub fn sanitize_component(name: &str, os: Os) -> (String, Vec<Rename>) {
    let mut why = Vec::new();
    // Control characters (C0, DEL, C1) and invisible formatting (bidi overrides, zero-width
    // characters) are replaced too: they break terminals and file managers and can disguise
    // "invoice\u{202e}fdp.exe" as a PDF.
    let illegal = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}')
            || c == '/'
            || c == '\\'
            || (os == Os::Windows && "<>:\"|?*".contains(c))
    };
    let mut s: String = name
        .chars()
        .map(|c| if illegal(c) { '_' } else { c })
        .collect();
    if s != name {
        note(&mut why, Rename::IllegalChars);
    }
    if os == Os::Windows {
        windows_fixes(&mut s, &mut why);
    }
    if os.name_len(&s) > MAX_NAME {
        let (stem, ext) = split_ext(&s);
        let room = MAX_NAME.saturating_sub(os.name_len(ext));
        s = format!("{}{ext}", cut(stem, room, os));
        note(&mut why, Rename::Shortened);
        if os == Os::Windows {
            // The cut may leave trailing spaces whose removal shows a device name ("CON   x").
            windows_fixes(&mut s, &mut why);
        }
    }
    if s.is_empty() || s == "." || s == ".." {
        s = "_".to_owned();
        note(&mut why, Rename::DotName);
    }
    (s, why)
}

/// Returns `name` (sanitized first, a no-op on [`sanitize_component`] output) if `taken` says
/// it is free, else the first free `stem (n)ext` for n in 1..=[`MAX_TRIES`], cutting the
/// stem so that the result fits [`MAX_NAME`]. Works for directories too (`photos (1)`).
pub fn unique_name(name: &str, os: Os, taken: impl Fn(&str) -> bool) -> Option<String> {
    let (name, _) = sanitize_component(name, os);
    if !taken(&name) {
        return Some(name);
    }
    let (stem, ext) = split_ext(&name);
    (1..=MAX_TRIES).find_map(|n| {
        let tag = format!(" ({n})");
        let room = MAX_NAME.saturating_sub(os.name_len(&tag) + os.name_len(ext));
        let candidate = format!("{}{tag}{ext}", cut(stem, room, os));
        (!taken(&candidate)).then_some(candidate)
    })
}

/// Validates a peer's path, then sanitizes each component. Every returned component is
/// non-empty, is not `.` or `..`, has no separator or NUL, and fits [`MAX_NAME`], so when
/// `os` is [`Os::current`] joining them onto a destination stays inside it.
pub fn safe_relative_path(
    components: &[String],
    os: Os,
) -> Result<(Vec<String>, Vec<RenameNote>), NameError> {
    validate_wire_path(components)?;
    let mut notes = Vec::new();
    let mut out = Vec::with_capacity(components.len());
    for (index, original) in components.iter().enumerate() {
        let (renamed, reasons) = sanitize_component(original, os);
        if !reasons.is_empty() {
            let (original, renamed) = (original.clone(), renamed.clone());
            notes.push(RenameNote {
                index,
                original,
                renamed,
                reasons,
            });
        }
        out.push(renamed);
    }
    Ok((out, notes))
}

/// Whether `dest` (its length in UTF-16 units, no trailing separator) joined with
/// `components` fits Windows' legacy [`WINDOWS_MAX_PATH`], NUL included. Only advisory: Rust's
/// std on Windows adds the `\\?\` prefix to long paths itself, but Explorer and many other
/// programs cannot open longer paths.
pub fn windows_path_budget(dest_len_utf16: usize, components: &[String]) -> bool {
    let rel: usize = components.iter().map(|c| 1 + Os::Windows.name_len(c)).sum();
    dest_len_utf16 + rel < WINDOWS_MAX_PATH
}

fn note(why: &mut Vec<Rename>, r: Rename) {
    if !why.contains(&r) {
        why.push(r);
    }
}

/// Trims trailing dots and spaces (to `_` if nothing is left), then prefixes device names.
fn windows_fixes(s: &mut String, why: &mut Vec<Rename>) {
    let keep = s.trim_end_matches([' ', '.']).len();
    if keep < s.len() {
        s.truncate(keep);
        if s.is_empty() {
            s.push('_');
        }
        note(why, Rename::Trailing);
    }
    if is_reserved(s) {
        s.insert(0, '_');
        note(why, Rename::Reserved);
    }
}

fn is_reserved(name: &str) -> bool {
    let base = name
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ');
    let base = base.to_ascii_uppercase(); // leaves ¹²³ alone
    let numbered = |dev| {
        base.strip_prefix(dev)
            .is_some_and(|n: &str| n.chars().count() == 1 && "0123456789¹²³".contains(n))
    };
    matches!(
        base.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || numbered("COM")
        || numbered("LPT")
}

/// Splits off the extension as described in the module docs (`("", "")` never happens: the
/// stem is non-empty whenever the extension is).
fn split_ext(name: &str) -> (&str, &str) {
    let short = |i: usize| i > 0 && name[i + 1..].chars().count() <= MAX_EXT;
    let Some(i) = name.rfind('.').filter(|&i| short(i)) else {
        return (name, "");
    };
    let tar = |j: usize| {
        j > 0
            && name
                .get(j..i)
                .is_some_and(|t| t.eq_ignore_ascii_case(".tar"))
    };
    name.split_at(i.checked_sub(4).filter(|&j| tar(j)).unwrap_or(i))
}

/// The longest prefix of `s` of at most `max` units, ending on a `char` boundary.
fn cut(s: &str, max: usize, os: Os) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += os.char_len(c);
        if used > max {
            return &s[..i];
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::path::{Component, PathBuf};
    use Os::{Unix, Windows};
    use Rename::*;

    fn v(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }
    fn san(name: &str, os: Os) -> String {
        sanitize_component(name, os).0
    }

    #[test]
    fn wire_rejects_traversal_separators_nul_and_empties() {
        use NameError::*;
        for (path, want) in [
            (&[".."][..], DotOrDotDot),
            (&["a", "..", "b"], DotOrDotDot),
            (&["."], DotOrDotDot),
            (&["ok", "a/b"], Separator),
            (&["/etc"], Separator),
            (&["a\\b"], Separator),
            (&["..\\x"], Separator),
            (&["a\0b"], Nul),
            (&["a", ""], Empty),
            (&[], EmptyPath),
        ] {
            assert_eq!(validate_wire_path(&v(path)), Err(want), "{path:?}");
        }
    }

    #[test]
    fn wire_limits_depth_and_length_and_accepts_odd_names() {
        let deep = |n| validate_wire_path(&vec!["d".to_string(); n]);
        assert_eq!(
            (deep(64), deep(65)),
            (Ok(()), Err(NameError::TooDeep { depth: 65, max: 64 }))
        );
        assert!(validate_wire_path(&["x".repeat(1024)]).is_ok());
        let long = validate_wire_path(&["x".repeat(10_000)]);
        assert!(matches!(long, Err(NameError::TooLong { len: 10_000, .. })));
        assert!(validate_wire_path(&v(&["...", ".hidden", "a..b", " ", "CON", "é"])).is_ok());
    }

    #[test]
    fn sanitize_rules_by_example() {
        for (os, input, want, why) in [
            (Unix, "a\tb\n\x1b", "a_b__", &[IllegalChars][..]),
            (Unix, "a<b>:\"|?*. ", "a<b>:\"|?*. ", &[]),
            (Unix, "CON.txt", "CON.txt", &[]),
            (Unix, "...", "...", &[]),
            (Unix, "a/b\\c\0", "a_b_c_", &[IllegalChars]), // input that skipped the wire check
            (Unix, "..", "_", &[DotName]),
            (
                Windows,
                "a<>:\"|?*\x01\x1fb",
                "a_________b",
                &[IllegalChars],
            ),
            (Windows, "C:", "C_", &[IllegalChars]),
            (Windows, "file. . ", "file", &[Trailing]),
            (Windows, "name.txt.", "name.txt", &[Trailing]),
            (Windows, " a b", " a b", &[]),
            (Windows, "CON .txt", "_CON .txt", &[Reserved]),
            (Windows, "aux. ", "_aux", &[Trailing, Reserved]),
            (Windows, "nul:", "nul_", &[IllegalChars]),
            (Windows, "", "_", &[DotName]),
        ] {
            let got = sanitize_component(input, os);
            assert_eq!(got, (want.to_string(), why.to_vec()), "{os:?} {input:?}");
        }
    }

    #[test]
    fn windows_names_of_only_dots_and_spaces_become_underscore() {
        for only in [".", "..", "...", " ", "   ", ". .", "....", " .. "] {
            assert_eq!(
                sanitize_component(only, Windows),
                ("_".into(), vec![Trailing])
            );
        }
    }

    #[test]
    fn windows_reserved_names_in_every_case_variant() {
        let devices = [
            "con", "prn", "aux", "nul", "conin$", "conout$", "com0", "com9",
        ];
        for base in devices
            .into_iter()
            .chain(["lpt1", "lpt0", "com¹", "lpt²", "com³"])
        {
            let chars: Vec<char> = base.chars().collect();
            for mask in 0..1u32 << chars.len() {
                let upper = |(i, c): (usize, &char)| match mask >> i & 1 {
                    1 => c.to_ascii_uppercase(),
                    _ => *c,
                };
                let name: String = chars.iter().enumerate().map(upper).collect();
                for suffix in ["", ".txt", " .txt", ".tar.gz", ".", "  "] {
                    let (out, why) = sanitize_component(&format!("{name}{suffix}"), Windows);
                    assert!(
                        out.starts_with('_') && why.contains(&Reserved),
                        "{name}{suffix}"
                    );
                    assert_eq!(san(&out, Windows), out);
                }
            }
        }
        for ok in [
            "CONSOLE", "COM10", "LPT", "xCON", "NULL.txt", "COM¹0", "aux_", "COM",
        ] {
            assert_eq!(sanitize_component(ok, Windows), (ok.into(), vec![]));
        }
    }

    #[test]
    fn ten_thousand_byte_name_is_cut_to_the_limit() {
        let long = "a".repeat(10_000);
        for os in [Unix, Windows] {
            assert_eq!(
                sanitize_component(&long, os),
                ("a".repeat(255), vec![Shortened])
            );
        }
        let refused = safe_relative_path(&[long], Unix);
        assert!(matches!(refused, Err(NameError::TooLong { .. })));
    }

    #[test]
    fn cut_points_respect_chars_and_surrogates() {
        for (name, os, want_len) in [
            (format!("a{}", "😀".repeat(100)), Unix, 253), // 1 + 63 * 4
            (format!("aa{}", "😀".repeat(200)), Windows, 254), // a pair would straddle 255
            (format!("a{}", "漢".repeat(100)), Unix, 253), // 1 + 84 * 3
            ("漢".repeat(300), Windows, 255),
            (format!("ab{}", "e\u{301}".repeat(100)), Unix, 255), // ends on a bare 'e'
            (format!("a{}", "e\u{301}".repeat(100)), Unix, 254),  // 1 byte left, U+0301 needs 2
            ("👨‍👩‍👧".repeat(60), Windows, 254), // ZWJ family of 8 units: 31 * 8 + 6
        ] {
            let out = san(&name, os);
            assert!(name.starts_with(&out));
            assert_eq!(os.name_len(&out), want_len, "{os:?}");
        }
    }

    #[test]
    fn shortening_keeps_short_extensions() {
        let out = san(&format!("{}.txt", "a".repeat(300)), Unix);
        assert_eq!((out.len(), out.ends_with("aaa.txt")), (255, true));
        let out = san(&format!("{}.tar.gz", "😀".repeat(300)), Windows);
        assert_eq!(
            (Windows.name_len(&out), out.ends_with("😀.tar.gz")),
            (255, true)
        );
        let long_ext = format!("a.{}", "b".repeat(300));
        assert_eq!(san(&long_ext, Unix), long_ext[..255]);
        let dotfile = format!(".{}", "c".repeat(300)); // no stem, so no extension
        assert_eq!(san(&dotfile, Unix), dotfile[..255]);
        let hidden = format!("CON{}x", " ".repeat(300)); // cut, trim, then a device name
        assert_eq!(sanitize_component(&hidden, Windows).0, "_CON");
    }

    #[test]
    fn unique_names_with_and_without_extension() {
        let t: HashSet<String> = v(&["a.pdf", "a (1).pdf", "pics", "b.tar.gz", ".rc", "_con"])
            .into_iter()
            .collect();
        for (os, name, want) in [
            (Unix, "free.txt", "free.txt"),
            (Unix, "a.pdf", "a (2).pdf"),
            (Unix, "pics", "pics (1)"),
            (Unix, "b.tar.gz", "b (1).tar.gz"),
            (Unix, ".rc", ".rc (1)"),
            (Windows, "con", "_con (1)"),
        ] {
            assert_eq!(
                unique_name(name, os, |c| t.contains(c)).as_deref(),
                Some(want)
            );
        }
        assert_eq!(unique_name("x", Unix, |_| true), None);
    }

    #[test]
    fn unique_name_at_max_length() {
        let name = format!("{}.txt", "a".repeat(251));
        let out = unique_name(&name, Unix, |c| c == name).unwrap();
        assert_eq!((out.len(), out.ends_with("a (1).txt")), (255, true));
        let wide = "😀".repeat(127); // 254 units
        let out = unique_name(&wide, Windows, |c| c == wide).unwrap();
        assert_eq!(
            (Windows.name_len(&out), out.ends_with("😀 (1)")),
            (254, true)
        );
    }

    #[test]
    fn safe_relative_path_reports_each_rename() {
        let (out, notes) = safe_relative_path(&v(&["dir", "CON", "a:b.txt"]), Windows).unwrap();
        assert_eq!(out, v(&["dir", "_CON", "a_b.txt"]));
        let summary: Vec<_> = notes
            .iter()
            .map(|n| (n.index, &n.original[..], &n.renamed[..]))
            .collect();
        assert_eq!(summary, [(1, "CON", "_CON"), (2, "a:b.txt", "a_b.txt")]);
        assert_eq!(
            (notes[0].reasons.as_slice(), notes[1].reasons.as_slice()),
            (&[Reserved][..], &[IllegalChars][..])
        );
        let plain = v(&["a", "b.txt"]);
        assert_eq!(safe_relative_path(&plain, Unix), Ok((plain, vec![])));
    }

    #[test]
    fn windows_path_budget_counts_separators() {
        assert!(windows_path_budget(11, &v(&["a"; 124]))); // 11 + 248 = 259, + NUL
        assert!(!windows_path_budget(12, &v(&["a"; 124])));
        assert!(!windows_path_budget(3, &["😀".repeat(128)])); // 3 + 1 + 256
    }

    fn name() -> impl Strategy<Value = String> {
        let odd = [
            '.', ' ', '/', '\\', '\0', ':', '\t', '😀', '漢', '\u{301}', 'C', 'o', 'N', '1', '¹',
        ];
        let odd = prop::sample::select(odd.to_vec());
        let ch = prop_oneof![3 => odd, 1 => any::<char>(), 1 => Just('a')];
        let (short, long) = (
            prop::collection::vec(ch.clone(), 0..8),
            prop::collection::vec(ch, 200..400),
        );
        prop_oneof![short, long].prop_map(String::from_iter)
    }
    fn mostly_valid() -> impl Strategy<Value = String> {
        let clean = name().prop_map(|s| s.replace(['/', '\\', '\0'], "x"));
        prop_oneof![19 => clean.prop_filter("non-empty", |s| !s.is_empty()), 1 => name()]
    }
    fn os() -> impl Strategy<Value = Os> {
        prop_oneof![Just(Unix), Just(Windows)]
    }
    fn assert_safe(c: &str, os: Os) {
        assert!(!c.is_empty() && c != "." && c != "..", "{c:?}");
        assert!(
            !c.contains(['/', '\\', '\0']) && os.name_len(c) <= MAX_NAME,
            "{c:?}"
        );
    }

    proptest! {
        #[test]
        fn safe_path_stays_inside(parts in prop::collection::vec(mostly_valid(), 0..12), os in os()) {
            let Ok((out, _)) = safe_relative_path(&parts, os) else { return Ok(()) };
            prop_assert_eq!(out.len(), parts.len());
            out.iter().for_each(|c| assert_safe(c, os));
            if os == Os::current() {
                let joined: PathBuf = out.iter().collect();
                let comps: Vec<_> = joined.components().collect();
                prop_assert_eq!(comps.len(), out.len());
                prop_assert!(comps.iter().all(|c| matches!(c, Component::Normal(_))));
            }
        }

        #[test]
        fn sanitize_is_safe_and_idempotent(n in name(), os in os()) {
            let (once, why) = sanitize_component(&n, os);
            assert_safe(&once, os);
            prop_assert_eq!(why.is_empty(), once == n);
            prop_assert_eq!(sanitize_component(&once, os), (once.clone(), vec![]));
        }

        #[test]
        fn unique_name_avoids_taken_and_fits(n in name(), os in os(), rounds in 1usize..25) {
            let mut taken = HashSet::new();
            for _ in 0..rounds {
                let got = unique_name(&n, os, |c| taken.contains(c)).unwrap();
                assert_safe(&got, os);
                prop_assert_eq!(sanitize_component(&got, os), (got.clone(), vec![]));
                prop_assert!(taken.insert(got));
            }
        }
    }
}
