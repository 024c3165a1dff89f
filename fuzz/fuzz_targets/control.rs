//! The control protocol's frames (the local socket and members' sessions in the tunnel), read
//! the way a node reads a front end's and a front end reads a node's: bounded, typed, and every
//! command that decodes has a capability, which a member is refused when it names another
//! library or needs `owner`.
#![no_main]

#[path = "common.rs"]
mod common;

use ferry_core::control::wire::{read, Down, Up, MAX_DOWN, MAX_UP};
use ferry_core::control::{authorize, Caller, Capability, Refusal};
use ferry_core::library::wire::LibraryId;
use ferry_p2p::PeerId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    common::block_on(async {
        let mut r = rest;
        if which % 2 == 1 {
            while let Ok(Some(_)) = read::<_, Down>(&mut r, MAX_DOWN).await {}
            return;
        }
        let member = Caller::Member {
            node: PeerId([1; 32]),
            library: LibraryId([2; 16]),
        };
        while let Ok(Some(up)) = read::<_, Up>(&mut r, MAX_UP).await {
            let Up::Call { mut command, .. } = up else { continue };
            let cap = command.capability();
            let _ = command.name();
            let named = command.library_mut().map(|_| LibraryId([3; 16]));
            // Another library, or an owner command: refused whatever is granted.
            match authorize(&member, cap, named, |_| true) {
                Ok(()) => assert!(cap != Capability::Owner && named.is_none()),
                Err(Refusal::OwnerOnly) => assert_eq!(cap, Capability::Owner),
                Err(Refusal::OtherLibrary) => assert!(named.is_some()),
                Err(e) => panic!("unexpected refusal {e:?}"),
            }
            assert_eq!(authorize(&Caller::Local, cap, named, |_| false), Ok(()));
        }
    })
});
