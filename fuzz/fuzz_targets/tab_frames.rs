//! Fuzz target: arbitrary frames into a tab's bridge link, before and
//! after a handshake could finish. The tab must never panic and must keep
//! asking only for what the platform can do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::peer::tab::{TabConfig, TabEvent, TabPeer};
use peersm_core::rng::SimRng;

/// A real SPKI (RSA-1024) so the tab accepts its identity.
const SPKI: &str = "30819f300d06092a864886f70d010101050003818d0030818902818100c9726832aeb10e3315ec50e40d678b2f00e37cf511d7b8b04ad44995aa9b97959dbad74b2abb201eda82e7ece0c81fab1775103a88721bcba30e38fcc0a3806284417dc627595e81028a8bb34f98c8548d049b1dc792ee9d705d97ee10569c36261e70159ea6cc56a6c2f13ab1a5093fc3986ff47b39673b54f5efa0b6edf0570203010001";

fuzz_target!(|data: &[u8]| {
    let spki = hex::decode(SPKI).expect("hex");
    let mut rng = SimRng::new(2);
    let Ok(mut tab) = TabPeer::new(TabConfig::new(spki), &mut rng, 1_700_000_000_000) else {
        return;
    };
    let link = tab.bridge_opened(None, 1_700_000_000_000);
    let mut now = 1_700_000_000_000u64;
    for frame in data.split(|b| *b == 0xff) {
        now += 10;
        tab.handle_frame(link, frame, now);
        while tab.poll_transmit().is_some() {}
        while let Some(e) = tab.poll_event() {
            if let TabEvent::Sign { request, .. } = e {
                tab.handle_signature(request, Ok(vec![0; 128]), now);
            }
        }
    }
    tab.handle_timeout(now + 60_000);
});
