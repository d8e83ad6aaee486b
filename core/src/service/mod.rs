//! Services behind the router: what serves the streams that end at this
//! peer. `Services::handle` takes the router's events, serves those that
//! belong to a service (BEGIN_DIR and its stream, BEGIN at an exit), and
//! gives back the rest (control messages for the mesh, `Connect` for the
//! adapter, `CircuitClosed` after cleaning up). The ORDB (`ordb.rs`) needs
//! the peer's muxes as well as its router, so its owner runs it on the
//! events `handle` gives back.

pub mod dir;
pub mod exit;
pub mod exit_policy;
pub mod ordb;

use std::fmt::Debug;

use crate::cell::end_reason;
use crate::circuit::StreamTarget;
use crate::router::{Router, RouterEvent};

pub use dir::{DirRoutes, DirService};
pub use exit::{ExitEvent, ExitService, ExitStream};
pub use exit_policy::{ExitPolicy, DEFAULT_EXIT_POLICY};

/// The services of one peer. Without a directory BEGIN_DIR is refused
/// (NOTDIRECTORY); without an exit BEGIN is refused (EXITPOLICY).
pub struct Services<L> {
    pub dir: Option<DirService<L>>,
    pub exit: Option<ExitService<L>>,
}

impl<L: Copy + Ord + Debug> Services<L> {
    pub fn new(dir: Option<DirRoutes>, exit: Option<ExitPolicy>) -> Self {
        Services {
            dir: dir.map(DirService::new),
            exit: exit.map(ExitService::new),
        }
    }

    /// Serves `event` if it is a service's; returns it otherwise (and
    /// `CircuitClosed` always, after the services forgot the circuit).
    pub fn handle(
        &mut self,
        router: &mut Router<L>,
        event: RouterEvent<L>,
    ) -> Option<RouterEvent<L>> {
        match event {
            RouterEvent::StreamBegin {
                circuit,
                stream,
                target,
            } => {
                match (target, self.dir.as_mut(), self.exit.as_mut()) {
                    (StreamTarget::Directory, Some(dir), _) => dir.begin(router, circuit, stream),
                    (StreamTarget::Directory, None, _) => {
                        let _ = router.stream_refused(circuit, stream, end_reason::NOTDIRECTORY);
                    }
                    (StreamTarget::Tcp { host, port }, _, Some(exit)) => {
                        exit.begin(router, circuit, stream, host, port)
                    }
                    (StreamTarget::Tcp { .. }, _, None) => {
                        let _ = router.stream_refused(circuit, stream, end_reason::EXITPOLICY);
                    }
                }
                None
            }
            RouterEvent::StreamReadable { circuit, stream } => {
                if let Some(dir) = self.dir.as_mut().filter(|d| d.owns(circuit, stream)) {
                    dir.readable(router, circuit, stream);
                    return None;
                }
                match self.exit.as_mut().filter(|e| e.owns(&(circuit, stream))) {
                    Some(exit) => exit.readable((circuit, stream)),
                    None => return Some(RouterEvent::StreamReadable { circuit, stream }),
                }
                None
            }
            RouterEvent::StreamWritable { circuit, stream } => {
                if let Some(dir) = self.dir.as_mut().filter(|d| d.owns(circuit, stream)) {
                    dir.writable(router, circuit, stream);
                    return None;
                }
                match self.exit.as_mut().filter(|e| e.owns(&(circuit, stream))) {
                    Some(exit) => exit.writable((circuit, stream)),
                    None => return Some(RouterEvent::StreamWritable { circuit, stream }),
                }
                None
            }
            RouterEvent::StreamEnded {
                circuit,
                stream,
                reason,
            } => {
                let mut served = false;
                if let Some(dir) = self.dir.as_mut().filter(|d| d.owns(circuit, stream)) {
                    dir.ended(circuit, stream);
                    served = true;
                }
                if let Some(exit) = self.exit.as_mut().filter(|e| e.owns(&(circuit, stream))) {
                    exit.ended((circuit, stream));
                    served = true;
                }
                (!served).then_some(RouterEvent::StreamEnded {
                    circuit,
                    stream,
                    reason,
                })
            }
            RouterEvent::CircuitClosed { circuit, reason } => {
                if let Some(dir) = self.dir.as_mut() {
                    dir.circuit_closed(circuit);
                }
                if let Some(exit) = self.exit.as_mut() {
                    exit.circuit_closed(circuit);
                }
                Some(RouterEvent::CircuitClosed { circuit, reason })
            }
            other => Some(other),
        }
    }

    pub fn poll_exit_event(&mut self) -> Option<ExitEvent<L>> {
        self.exit.as_mut()?.poll_event()
    }
}
