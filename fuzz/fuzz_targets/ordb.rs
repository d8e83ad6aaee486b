//! Fuzz target: every ORDB decoder — DB_QUERY, DB_CONNECTED (fragments),
//! DB_DATA's header, DB_INFO, FIND_VALUE, FOUND_VALUE, STORE, and a
//! manifest checked against a hash_name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::cell::ordb::{DbConnected, DbConnectedReassembler, DbDataHeader, DbQuery};
use peersm_core::cell::{relay_command, ControlMessage};
use peersm_core::content::{HashName, Manifest};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 8 {
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
            ][usize::from(which % 8 - 3)];
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
