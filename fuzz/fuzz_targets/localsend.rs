//! LocalSend's peer input (`ferry-localsend`): the JSON bodies of `info`, `register`,
//! `prepare-upload` and its answer, a multicast datagram, and an upload's query string. Each
//! decodes to a bounded value or a typed error; an offer that decodes becomes a manifest whose
//! every path passes the hostile-name rules, or is refused whole.
#![no_main]

use ferry_localsend::{discovery, offer, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(p) = wire::decode_prepare_upload(body) {
                // An empty offer decodes (the server answers it 204); no offer is larger.
                assert!(p.files.len() <= wire::MAX_FILES);
                if let Ok(o) = offer::offer(&p) {
                    assert_eq!(o.files.len(), p.files.len());
                    for e in &o.manifest.entries {
                        assert!(ferry_block::names::validate_wire_path(&e.path).is_ok());
                    }
                }
            }
        }
        1 => {
            if let Ok(info) = wire::decode_device_info(body) {
                assert!(info.alias.len() <= wire::MAX_ALIAS * 4);
                assert!(info.fingerprint.len() <= wire::MAX_FINGERPRINT);
            }
        }
        2 => {
            let _ = wire::decode_prepare_response(body);
        }
        3 => {
            let _ = discovery::hear(body, "OWN");
        }
        _ => {
            if let Ok(q) = std::str::from_utf8(body) {
                let _ = wire::parse_query(Some(q));
            }
        }
    }
});
