//! Content: files named by `hash_name` (manifests, Merkle trees over their
//! blocks). What ORDBs serve and relay, and what downloads verify.

pub mod follow;
pub mod library;
pub mod live;
pub mod manifest;
pub mod merkle;

pub use manifest::{HashName, Manifest, ManifestError, BLOCK_LEN};
pub mod schedule;
pub mod web_live;

pub use schedule::{Action, ScheduleError, ScheduleStats, Scheduler, SourceId};
