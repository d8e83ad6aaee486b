//! Circuit-level flow control (tor-spec §7.3, prop 289 authenticated
//! SENDMEs): package windows limit what we send, deliver windows decide
//! when we ask for more by sending SENDMEs. Only RELAY_DATA cells count.
//! Stream-level windows live with the stream queues (`stream.rs`).

use std::collections::VecDeque;
use subtle::ConstantTimeEq;

use crate::crypto::relay_crypto::CellDigest;

pub const CIRCUIT_WINDOW_START: u16 = 1000;
pub const CIRCUIT_WINDOW_INCREMENT: u16 = 100;
pub const STREAM_WINDOW_START: u16 = 500;
pub const STREAM_WINDOW_INCREMENT: u16 = 50;
/// More unacknowledged SENDME digests than a full window can produce means
/// the peer is misbehaving.
const MAX_PENDING_DIGESTS: usize = (CIRCUIT_WINDOW_START / CIRCUIT_WINDOW_INCREMENT) as usize + 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("SENDME would open the window past its maximum")]
    WindowOverflow,
    #[error("authenticated SENDME digest does not match a cell we sent")]
    BadSendmeDigest,
    #[error("peer sent data beyond the window we gave it")]
    DeliverWindowExceeded,
}

/// Circuit-level windows toward one hop, with the digests an authenticated
/// SENDME from that hop must echo.
#[derive(Debug, Clone)]
pub struct CircuitWindow {
    package: u16,
    deliver: u16,
    expected_digests: VecDeque<CellDigest>,
}

impl Default for CircuitWindow {
    fn default() -> Self {
        CircuitWindow {
            package: CIRCUIT_WINDOW_START,
            deliver: CIRCUIT_WINDOW_START,
            expected_digests: VecDeque::new(),
        }
    }
}

impl CircuitWindow {
    pub fn can_package(&self) -> bool {
        self.package > 0
    }

    pub fn package_window(&self) -> u16 {
        self.package
    }

    /// Records that we sent a DATA cell whose running digest is `digest`.
    pub fn on_data_sent(&mut self, digest: CellDigest) {
        self.package = self.package.saturating_sub(1);
        // The peer answers every 100th cell with a SENDME echoing its digest.
        if self.package % CIRCUIT_WINDOW_INCREMENT == 0
            && self.expected_digests.len() < MAX_PENDING_DIGESTS
        {
            self.expected_digests.push_back(digest);
        }
    }

    /// A circuit-level SENDME arrived: checks its digest (v1; both ends
    /// refuse v0) and reopens.
    pub fn on_sendme(&mut self, digest: &CellDigest) -> Result<(), FlowError> {
        if self.package + CIRCUIT_WINDOW_INCREMENT > CIRCUIT_WINDOW_START {
            return Err(FlowError::WindowOverflow);
        }
        let expected = self.expected_digests.pop_front();
        if !expected.is_some_and(|e| bool::from(e.ct_eq(digest))) {
            return Err(FlowError::BadSendmeDigest);
        }
        self.package += CIRCUIT_WINDOW_INCREMENT;
        Ok(())
    }

    /// A DATA cell arrived; `true` when we must now send a SENDME.
    pub fn on_data_received(&mut self) -> Result<bool, FlowError> {
        self.deliver = self
            .deliver
            .checked_sub(1)
            .ok_or(FlowError::DeliverWindowExceeded)?;
        if self.deliver <= CIRCUIT_WINDOW_START - CIRCUIT_WINDOW_INCREMENT {
            self.deliver += CIRCUIT_WINDOW_INCREMENT;
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_window_records_every_hundredth_digest_and_checks_sendmes() {
        let mut w = CircuitWindow::default();
        for i in 0..1000u32 {
            assert!(w.can_package());
            let mut d = [0u8; 20];
            d[..4].copy_from_slice(&i.to_be_bytes());
            w.on_data_sent(d);
        }
        assert!(!w.can_package());
        // The SENDME for the 100th cell (index 99) echoes its digest.
        let mut d99 = [0u8; 20];
        d99[..4].copy_from_slice(&99u32.to_be_bytes());
        assert_eq!(w.on_sendme(&[9; 20]), Err(FlowError::BadSendmeDigest));
        let mut w2 = CircuitWindow::default();
        for i in 0..100u32 {
            let mut d = [0u8; 20];
            d[..4].copy_from_slice(&i.to_be_bytes());
            w2.on_data_sent(d);
        }
        assert_eq!(w2.on_sendme(&d99), Ok(()));
        assert_eq!(w2.package_window(), 1000);
        assert_eq!(w2.on_sendme(&d99), Err(FlowError::WindowOverflow));
    }

    #[test]
    fn deliver_windows_ask_for_sendmes_and_refuse_overruns() {
        let mut w = CircuitWindow::default();
        let due: Vec<bool> = (0..200).map(|_| w.on_data_received().unwrap()).collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 2);
        assert!(due[99] && due[199]);
        let mut greedy = CircuitWindow {
            deliver: 0,
            ..Default::default()
        };
        assert_eq!(
            greedy.on_data_received(),
            Err(FlowError::DeliverWindowExceeded)
        );
    }
}
