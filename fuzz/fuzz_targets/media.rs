//! Remote media's messages (inner protocol 3 of the tunnel), read the way the server and the
//! requester read them: requests are bounds-checked, ranges clamped, and every thumbnail a
//! member sends goes through the check that guards the store (a real JPEG/WebP decode).
#![no_main]

#[path = "common.rs"]
mod common;

use ferry_core::library::media::wire::{clamp, Reply, Request, MAX_REPLY, MAX_REQUEST, MAX_THUMBS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    common::block_on(async {
        let mut r = rest;
        if which % 2 == 0 {
            if let Ok(Some(req)) = ferry_p2p::wire::read_frame::<_, Request>(&mut r, MAX_REQUEST).await {
                if req.check().is_ok() {
                    if let Request::Thumbs { cas } = &req {
                        assert!(!cas.is_empty() && cas.len() <= MAX_THUMBS);
                    }
                }
            }
            return;
        }
        while let Ok(Some(reply)) = ferry_p2p::wire::read_frame::<_, Reply>(&mut r, MAX_REPLY).await {
            match reply {
                Reply::Thumb { bytes, .. } => {
                    let _ = ferry_index::thumb::check_received(&bytes);
                }
                Reply::Bytes { size, first, len } => {
                    if let Ok((f, n)) = clamp(size, first, len) {
                        assert!(f == first && n <= len && f + n <= size);
                    }
                }
                _ => {}
            }
        }
    })
});
