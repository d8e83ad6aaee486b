//! Fuzz target: every ORDB decoder — DB_QUERY, DB_CONNECTED (fragments),
//! DB_DATA's header, DB_INFO, FIND_VALUE, FOUND_VALUE, STORE, a
//! manifest checked against a hash_name, a live manifest, a live chunk's
//! header, and a live follower fed an arbitrary answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::ordb::{DbConnected, DbConnectedReassembler, DbDataHeader, DbQuery};
use peersm_core::cell::{relay_command, ControlMessage};
use peersm_core::content::follow::LiveFollower;
use peersm_core::content::live::{ChunkHeader, LiveManifest};
use peersm_core::content::{HashName, Manifest};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => {
            if let Ok(q) = DbQuery::decode(body) {
                assert_eq!(DbQuery::decode(&q.encode()).expect("decodes again"), q);
            }
        }
        1 => {
            // Fragments of at most one relay cell each.
            let mut r = DbConnectedReassembler::default();
            for f in body.chunks(498) {
                match r.push(f) {
                    Ok(Some(c)) => {
                        let again = DbConnected::decode(&c.encode().expect("re-encodes"));
                        assert_eq!(again.expect("decodes again"), c);
                        break;
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
        2 => {
            if let Ok((h, rest)) = DbDataHeader::decode(body) {
                assert_eq!(h.encode(rest), body);
            }
        }
        3..=6 => {
            let command = [
                relay_command::DB_INFO,
                relay_command::FIND_VALUE,
                relay_command::FOUND_VALUE,
                relay_command::STORE,
            ][usize::from(which % 10 - 3)];
            if let Ok(m) = ControlMessage::decode(command, body) {
                let again = m.encode().expect("re-encodes");
                assert_eq!(
                    ControlMessage::decode(command, &again).expect("decodes"),
                    m
                );
                if let ControlMessage::Store { node, .. } = &m {
                    // A node's signature check never panics either.
                    let _ = node.verify();
                }
            }
        }
        8 => {
            if let Ok(m) = LiveManifest::decode(body) {
                assert_eq!(m.encode(), body);
                assert!(LiveManifest::decode_for(body, &m.hash_name()).is_ok());
            }
            if let Ok(h) = ChunkHeader::decode(body) {
                assert_eq!(h.encode().as_slice(), body);
            }
        }
        9 => {
            // A follower's first answer: DB_CONNECTED, then data, then an
            // end, whatever they hold.
            let split = usize::from(body.first().copied().unwrap_or(0)) * 16;
            let (head, rest) = body.split_at(split.min(body.len()));
            let mut f = LiveFollower::new(HashName([1; 20]), 1_000);
            f.add_source(1, 1_000);
            while f.poll_action().is_some() {}
            if let Ok(answer) = DbConnected::decode(head) {
                f.on_connected(1, u32::MAX, answer, 1_000);
                f.on_data(1, u32::MAX, rest, 1_001);
                f.on_end(1, u32::MAX, 1, 1_002);
                f.tick(100_000);
                while f.poll_action().is_some() {}
            }
        }
        _ => {
            if let Ok(m) = Manifest::decode(body) {
                assert_eq!(m.encode(), body);
                assert!(Manifest::decode_for(body, &m.hash_name()).is_ok());
                assert!(
                    Manifest::decode_for(body, &HashName([0; 20])).is_err()
                        || m.hash_name() == HashName([0; 20])
                );
            }
        }
    }
});
