//! A data stream's records (Spaceblock v2), read the way the receiver reads them.
#![no_main]

#[path = "common.rs"]
mod common;

use ferry_block::record::{read_head, Head, MAX_DATA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::block_on(async {
        let mut r = data;
        while let Ok(Some(head)) = read_head(&mut r).await {
            if let Head::Data { len } = head {
                assert!(len > 0 && len <= MAX_DATA);
                r = &r[len.min(r.len())..];
            }
        }
    })
});
