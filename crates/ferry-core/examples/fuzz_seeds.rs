//! Writes the fuzzers' seed corpora (`fuzz/corpus/<target>/`) from real encodings, so each
//! target starts from well-formed input of every message kind and mutates from there.
//! Run: `cargo run -p ferry-core --example fuzz_seeds` (from the repository root).

use std::path::Path;

use ferry_block::manifest::{Entry, EntryKind, Manifest};
use ferry_block::record;
use ferry_core::library::wire as lib;
use ferry_core::spacedrop::wire as drop;
use ferry_p2p::wire::Header;
use ferry_p2p::PeerId;
use serde::Serialize;

fn frame<T: Serialize>(out: &mut Vec<u8>, msg: &T) {
    let body = postcard::to_stdvec(msg).expect("encodable");
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
}

fn stream(protocol: u16, version: u16) -> Vec<u8> {
    Header { protocol, version }.encode().to_vec()
}

fn entry(path: &[&str], kind: EntryKind, size: u64) -> Entry {
    Entry {
        path: path.iter().map(|s| s.to_string()).collect(),
        kind,
        size,
        mode: 0o644,
        mtime: 1_700_000_000,
    }
}

fn manifest() -> Manifest {
    Manifest {
        entries: vec![
            entry(&["vacation ✓"], EntryKind::Dir, 0),
            entry(&["vacation ✓", "empty"], EntryKind::Dir, 0),
            entry(&["vacation ✓", "notes.txt"], EntryKind::File, 12),
            entry(&["vacation ✓", "photo.jpeg"], EntryKind::File, 3_000_000),
            entry(&["CON.txt"], EntryKind::File, 0),
            entry(&["trailing. "], EntryKind::File, 1),
        ],
    }
}

fn snapshot() -> lib::Snapshot {
    let stamp = |n: u8| lib::Stamp {
        clock: n as u64,
        author: PeerId([n; 32]),
    };
    lib::Snapshot {
        library: lib::LibraryId([7; 16]),
        created: 1_700_000_000,
        name: "Family photos".into(),
        name_stamp: stamp(1),
        members: (1..4)
            .map(|n| lib::MemberRecord {
                node: PeerId([n; 32]),
                name: format!("node {n}"),
                state: if n == 3 {
                    lib::MemberState::Removed
                } else {
                    lib::MemberState::Member
                },
                stamp: stamp(n),
                added: 1_700_000_000,
            })
            .collect(),
    }
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus dir");
    std::fs::write(d.join(name), bytes).expect("seed");
}

fn main() {
    let dir = Path::new("fuzz/corpus");
    let id = drop::TransferId([3; 16]);

    let mut s = stream(ferry_p2p::ping::ID, 1);
    frame(&mut s, &ferry_p2p::ping::Ping { seq: 0 });
    frame(&mut s, &ferry_p2p::ping::Ping { seq: 1 });
    write(dir, "streams", "ping", &s);

    let mut s = stream(ferry_p2p::hello::ID, 1);
    frame(
        &mut s,
        &ferry_p2p::NodeInfo {
            name: "laptop \u{202e}gpj.exe".into(),
            os: "linux".into(),
            version: "0.1.0".into(),
        },
    );
    write(dir, "streams", "hello", &s);

    let mut s = stream(drop::CONTROL_ID, drop::VERSION);
    frame(
        &mut s,
        &drop::Offer {
            transfer: id,
            manifest: manifest(),
            resume: false,
        },
    );
    frame(
        &mut s,
        &drop::Control::Progress {
            bytes: 12,
            files: 1,
        },
    );
    frame(
        &mut s,
        &drop::Control::FileFailed {
            id: 3,
            reason: "disk full".into(),
        },
    );
    frame(&mut s, &drop::Control::Pause);
    frame(&mut s, &drop::Control::Finished);
    write(dir, "streams", "spacedrop-control", &s);

    let mut s = stream(drop::CONTROL_ID, drop::VERSION);
    frame(
        &mut s,
        &drop::Answer::Accepted {
            starts: vec![None, None, Some(0), Some(1 << 20)],
        },
    );
    write(dir, "streams", "spacedrop-answer", &s);

    let mut records = vec![];
    records.extend_from_slice(&record::file_start(2, 0));
    records.extend_from_slice(&record::data_head(12));
    records.extend_from_slice(b"hello world\n");
    records.extend_from_slice(&record::file_end(blake3::hash(b"hello world\n").as_bytes()));
    records.extend_from_slice(&record::file_start(3, 1 << 20));
    records.extend_from_slice(&record::file_abort("source changed"));
    let mut s = stream(drop::DATA_ID, drop::VERSION);
    frame(&mut s, &drop::DataStart { transfer: id });
    s.extend_from_slice(&records);
    write(dir, "streams", "spacedrop-data", &s);
    write(dir, "records", "two-files", &records);

    let nonce = [9u8; 32];
    let pairing = [4u8; 16];
    let mut s = stream(lib::PAIR_ID, lib::VERSION);
    frame(
        &mut s,
        &lib::PairRequest {
            pairing,
            library: lib::LibraryId([7; 16]),
            library_name: "Family photos".into(),
            commit: lib::commit(&nonce, &pairing),
        },
    );
    frame(&mut s, &lib::PairNonce { nonce: [1; 32] });
    frame(&mut s, &lib::PairReveal { nonce });
    frame(&mut s, &lib::PairDecision { accept: true });
    frame(
        &mut s,
        &lib::PairJoin {
            snapshot: snapshot(),
        },
    );
    write(dir, "streams", "pair", &s);

    let mut s = stream(lib::TUNNEL_ID, lib::VERSION);
    frame(
        &mut s,
        &lib::Open {
            library: lib::LibraryId([7; 16]),
            inner: lib::INNER_MEMBERS,
            nonce,
        },
    );
    frame(
        &mut s,
        &lib::Proof {
            proof: lib::Signature::from_bytes([5; 64]),
        },
    );
    frame(&mut s, &snapshot());
    write(dir, "streams", "tunnel", &s);

    write(
        dir,
        "manifest",
        "tree",
        &postcard::to_stdvec(&manifest()).expect("encodable"),
    );

    for (name, parts) in [
        ("plain", vec!["photos", "2024", "IMG_0001.jpeg"]),
        ("dots", vec!["..", ".", "a"]),
        ("windows", vec!["CON", "aux.txt", "trailing. ", "a:b*c?"]),
        ("long", vec![&*"é".repeat(200), "x.tar.gz"]),
        ("separators", vec!["a/b", "c\\d", "e\0f"]),
    ] {
        // Components are separated by the byte 0xFF, as the target splits them.
        let bytes: Vec<u8> = parts
            .join("\n")
            .bytes()
            .map(|b| if b == b'\n' { 0xff } else { b })
            .collect();
        write(dir, "names", name, &bytes);
    }
    println!("seeds written under {}", dir.display());
}
