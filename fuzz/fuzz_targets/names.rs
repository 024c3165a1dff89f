//! The hostile-name rules: any path a peer sends is refused or mapped to components that are
//! never empty, never `.`/`..`, hold no separator or NUL, and fit the OS's name limit.
#![no_main]

use ferry_block::names::{safe_relative_path, Os, MAX_NAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Components separated by 0xFF (never valid UTF-8, so it cannot occur inside one).
    let components: Vec<String> = data
        .split(|b| *b == 0xff)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    for os in [Os::Unix, Os::Windows] {
        let Ok((safe, _notes)) = safe_relative_path(&components, os) else {
            continue;
        };
        assert_eq!(safe.len(), components.len());
        for c in &safe {
            assert!(!c.is_empty() && c != "." && c != "..", "{c:?}");
            assert!(!c.contains(['/', '\\', '\0']), "{c:?}");
            assert!(os.name_len(c) <= MAX_NAME, "{c:?} too long");
        }
    }
});
