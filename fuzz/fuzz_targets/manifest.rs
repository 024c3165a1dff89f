//! A manifest as a sender offers it: decoded, validated, and laid out under a destination.
//! Whatever it says, every local path must stay inside the destination.
#![no_main]

use std::path::Component;

use ferry_block::manifest::Manifest;
use ferry_block::names::Os;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = ferry_p2p::wire::decode::<Manifest>(data) else {
        return;
    };
    if m.validate().is_err() {
        return;
    }
    let _ = (m.total_bytes(), m.file_count(), m.first_names(5));
    for os in [Os::Unix, Os::Windows] {
        let Ok(layout) = ferry_block::place::layout(&m, os, |n| n.len() % 3 == 0) else {
            continue;
        };
        assert_eq!(layout.paths.len(), m.entries.len());
        for p in &layout.paths {
            assert!(
                p.components().all(|c| matches!(c, Component::Normal(_))),
                "escapes or is absolute: {p:?}"
            );
        }
    }
});
