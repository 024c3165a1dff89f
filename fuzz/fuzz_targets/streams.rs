//! A whole incoming stream as the router and each protocol's handler read it: the 4-byte
//! header, then that protocol's frames in order, each with its own bound, and each decoded
//! message passed through the checks its handler applies. Nothing may panic, allocate past the
//! bound, or hang.
#![no_main]

#[path = "common.rs"]
mod common;

use std::time::Duration;

use ferry_core::library::wire as lib;
use ferry_core::spacedrop::wire as drop;
use ferry_p2p::wire::{read_frame, Header};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// The next frame, or `None` when the stream ends or is refused.
async fn next<T: DeserializeOwned>(r: &mut &[u8], max: usize) -> Option<T> {
    read_frame::<_, T>(r, max).await.ok().flatten()
}

fuzz_target!(|data: &[u8]| {
    common::block_on(async {
        let mut r = data;
        let Ok(h) = Header::read(&mut r, Duration::from_secs(1)).await else {
            return;
        };
        match h.protocol {
            ferry_p2p::ping::ID => {
                while next::<ferry_p2p::ping::Ping>(&mut r, ferry_p2p::ping::MAX_FRAME)
                    .await
                    .is_some()
                {}
            }
            ferry_p2p::hello::ID => {
                if let Some(info) =
                    next::<ferry_p2p::NodeInfo>(&mut r, ferry_p2p::hello::MAX_FRAME).await
                {
                    let clean = info.sanitized();
                    assert!(
                        !clean.name.is_empty()
                            && clean.name.len() <= ferry_p2p::hello::MAX_NAME_BYTES
                    );
                    assert!(!clean.name.chars().any(char::is_control));
                }
            }
            drop::CONTROL_ID => {
                if let Some(offer) = next::<drop::Offer>(&mut r, drop::MAX_OFFER).await {
                    if offer.manifest.validate().is_ok() {
                        let _ = offer.manifest.first_names(5);
                        let _ = ferry_block::place::layout(
                            &offer.manifest,
                            ferry_block::names::Os::current(),
                            |_| false,
                        );
                    }
                }
                while let Some(c) = next::<drop::Control>(&mut r, drop::MAX_CONTROL).await {
                    let _ = c;
                }
                let _ = next::<drop::Answer>(&mut r, drop::MAX_ANSWER).await;
            }
            drop::DATA_ID => {
                if next::<drop::DataStart>(&mut r, drop::MAX_CONTROL)
                    .await
                    .is_some()
                {
                    while let Ok(Some(head)) = ferry_block::record::read_head(&mut r).await {
                        if let ferry_block::record::Head::Data { len } = head {
                            let take = len.min(r.len());
                            r = &r[take..];
                        }
                    }
                }
            }
            lib::PAIR_ID => {
                if let Some(req) = next::<lib::PairRequest>(&mut r, lib::MAX_SMALL).await {
                    let _ = lib::check_name(&req.library_name);
                }
                let _ = next::<lib::PairNonce>(&mut r, lib::MAX_SMALL).await;
                let _ = next::<lib::PairReveal>(&mut r, lib::MAX_SMALL).await;
                let _ = next::<lib::PairDecision>(&mut r, lib::MAX_SMALL).await;
                if let Some(join) = next::<lib::PairJoin>(&mut r, lib::MAX_SNAPSHOT).await {
                    let _ = join.snapshot.check();
                }
            }
            lib::TUNNEL_ID => {
                let _ = next::<lib::Open>(&mut r, lib::MAX_SMALL).await;
                let _ = next::<lib::Proof>(&mut r, lib::MAX_SMALL).await;
                if let Some(s) = next::<lib::Snapshot>(&mut r, lib::MAX_SNAPSHOT).await {
                    if s.check().is_ok() {
                        assert!(s.members.len() <= lib::MAX_MEMBERS);
                    }
                }
            }
            _ => {}
        }
    })
});
