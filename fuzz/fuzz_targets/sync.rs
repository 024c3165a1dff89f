//! Library sync's messages (inner protocol 2 of the tunnel), read the way the puller and the
//! server read them; every decoded batch is then checked and applied to a real replica (a
//! SQLite file), which must refuse or apply it without panicking.
#![no_main]

#[path = "common.rs"]
mod common;

use ferry_core::library::sync::wire::{Down, Up, MAX_DOWN, MAX_UP};
use ferry_index::Contents;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static REPLICA: Contents = {
        let path = std::env::temp_dir().join(format!("ferry-fuzz-sync-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        std::fs::File::create(&path).expect("a temp database file");
        Contents::open(&path, [7; 32]).expect("a contents database")
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    common::block_on(async {
        let mut r = rest;
        if which % 2 == 0 {
            while let Ok(Some(Up::Pull { marks })) =
                ferry_p2p::wire::read_frame::<_, Up>(&mut r, MAX_UP).await
            {
                assert!(marks.len() <= MAX_UP / 8);
            }
            return;
        }
        while let Ok(Some(msg)) = ferry_p2p::wire::read_frame::<_, Down>(&mut r, MAX_DOWN).await {
            if let Down::Batch(b) = msg {
                REPLICA.with(|c| {
                    let _ = c.apply_batch(&b);
                });
            }
        }
    })
});
