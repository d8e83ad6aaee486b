//! A recording cut into live chunks (docs/PROTOCOL.md "Live streams"):
//! the bytes a MediaRecorder hands over (or a WebM file replayed as live)
//! go in as they come; out come the initialization segment, then pieces
//! of media, each marked `key` when it begins a Cluster that opens on a
//! video keyframe — where a follower can start.
//!
//! A recording's Segment and Clusters usually have an unknown size (the
//! recorder cannot know it), so a Cluster ends where the next top-level
//! element begins. Pieces end where the bytes end, except that a Cluster
//! whose first video block has not come yet is held back: its piece must
//! say whether it is a key.
//!
//! Like the rest of `media`, this reads whatever it is given and never
//! panics on it; a stream it cannot follow is an error, not a guess.

use std::collections::VecDeque;

use super::webm::{self, header, vint, CLUSTER};
use super::MediaError;

/// The largest initialization segment taken (`content::live::MAX_INIT`).
pub const MAX_INIT: usize = crate::content::live::MAX_INIT;
/// A piece of a Cluster's header or first block waits for at most this
/// many bytes before the Cluster counts as not a key.
const MAX_PENDING: u64 = 1 << 20;

const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const REFERENCE_BLOCK: u32 = 0xFB;
const TIMECODE: u32 = 0xE7;
/// Top-level elements (children of the Segment): one ends a Cluster of
/// unknown size.
const LEVEL1: [u32; 8] = [
    CLUSTER,
    0x1C53_BB6B, // Cues
    0x1254_C367, // Tags
    0x1941_A469, // Attachments
    0x1043_A770, // Chapters
    0x114D_9B74, // SeekHead
    0x1549_A966, // Info
    0x1654_AE6B, // Tracks
];

#[derive(Debug, Clone, PartialEq)]
pub enum Cut {
    /// The initialization segment, and the type MediaSource takes.
    Init { data: Vec<u8>, mse_type: String },
    /// Media bytes, in order. `key`: they begin a Cluster that opens on a
    /// keyframe; `time`: that Cluster's timecode, seconds.
    Piece {
        data: Vec<u8>,
        key: bool,
        time: Option<f64>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Boundary {
    /// Where a Cluster begins (absolute offset).
    at: u64,
    key: Option<bool>,
    time: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head,
    /// Between top-level elements.
    Top,
    /// Inside a Cluster that began at `start`, up to `end` if known.
    Cluster {
        start: u64,
        end: Option<u64>,
    },
}

pub struct LiveCutter {
    /// Bytes kept, from absolute offset `base`: those not yet cut, and
    /// those from `scan` on (an element header still to read).
    buf: Vec<u8>,
    base: u64,
    /// Bytes before this offset went out in pieces.
    emitted: u64,
    /// Where the next element header is expected.
    scan: u64,
    phase: Phase,
    video_track: Option<u64>,
    /// Nanoseconds per Cluster timecode unit.
    scale: u64,
    boundaries: VecDeque<Boundary>,
    /// The piece starting at `base` begins this Cluster.
    starts: Option<Boundary>,
}

impl Default for LiveCutter {
    fn default() -> Self {
        LiveCutter {
            buf: Vec::new(),
            base: 0,
            emitted: 0,
            scan: 0,
            phase: Phase::Head,
            video_track: None,
            scale: 1_000_000,
            boundaries: VecDeque::new(),
            starts: None,
        }
    }
}

fn bad(what: &'static str) -> MediaError {
    MediaError::Malformed("WebM", what)
}

impl LiveCutter {
    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn bytes_at(&self, at: u64) -> &[u8] {
        let from = at.saturating_sub(self.base);
        usize::try_from(from)
            .ok()
            .and_then(|f| self.buf.get(f..))
            .unwrap_or_default()
    }

    /// Takes the next bytes of the recording; returns what can be cut.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Cut>, MediaError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        if let Phase::Head = self.phase {
            let Some(head) = webm::live_head(&self.buf)? else {
                if self.buf.len() > MAX_INIT + 64 * 1024 {
                    return Err(MediaError::TooLarge(MAX_INIT as u64));
                }
                return Ok(out);
            };
            let init_end = usize::try_from(head.init_end).unwrap_or(usize::MAX);
            if init_end > MAX_INIT {
                return Err(MediaError::TooLarge(MAX_INIT as u64));
            }
            let data: Vec<u8> = self.buf.drain(..init_end).collect();
            self.base = head.init_end;
            self.emitted = head.init_end;
            self.scan = head.init_end;
            self.video_track = head.video_track;
            self.scale = head.scale.max(1);
            self.phase = Phase::Top;
            out.push(Cut::Init {
                data,
                mse_type: head.mse_type,
            });
        }
        self.scan()?;
        self.cut(&mut out, false);
        Ok(out)
    }

    /// The recording ended: the rest goes out.
    pub fn finish(&mut self) -> Vec<Cut> {
        let mut out = Vec::new();
        if !matches!(self.phase, Phase::Head) {
            self.cut(&mut out, true);
        }
        out
    }

    /// Walks the elements received so far.
    fn scan(&mut self) -> Result<(), MediaError> {
        loop {
            let rest = self.bytes_at(self.scan);
            let Some(h) = header(rest)? else {
                return Ok(());
            };
            match self.phase {
                Phase::Head => return Ok(()),
                Phase::Top => {
                    if h.id == CLUSTER {
                        let start = self.scan;
                        let data = start + h.len as u64;
                        self.boundaries.push_back(Boundary {
                            at: start,
                            key: None,
                            time: None,
                        });
                        self.phase = Phase::Cluster {
                            start,
                            end: h.size.map(|s| data.saturating_add(s)),
                        };
                        self.scan = data;
                    } else {
                        let size = h
                            .size
                            .ok_or_else(|| bad("an element of unknown size between clusters"))?;
                        self.scan = self.scan.saturating_add(h.len as u64).saturating_add(size);
                    }
                }
                Phase::Cluster { start, end } => {
                    if end.is_some_and(|e| self.scan >= e)
                        || (end.is_none() && LEVEL1.contains(&h.id))
                    {
                        self.cluster_done(start);
                        self.phase = Phase::Top;
                        if let Some(e) = end {
                            self.scan = e;
                        }
                        continue;
                    }
                    let size = h
                        .size
                        .ok_or_else(|| bad("a cluster child of unknown size"))?;
                    let data = rest.get(h.len..).unwrap_or_default();
                    let undecided = self
                        .boundaries
                        .back()
                        .is_some_and(|b| b.at == start && b.key.is_none());
                    match h.id {
                        TIMECODE if size <= 8 => {
                            let Some(v) = data.get(..size as usize) else {
                                return Ok(());
                            };
                            let seconds = super::be_uint(v) as f64 * self.scale as f64 / 1e9;
                            if let Some(b) = self.boundaries.back_mut().filter(|b| b.at == start) {
                                b.time = Some(seconds);
                            }
                        }
                        SIMPLE_BLOCK if undecided => {
                            // Track number, 2 bytes of timecode, flags.
                            let Some((track, n)) = vint(data, false)? else {
                                return Ok(());
                            };
                            let Some(&flags) = data.get(n + 2) else {
                                return Ok(());
                            };
                            self.block_seen(start, track, flags & 0x80 != 0);
                        }
                        BLOCK_GROUP if undecided => {
                            let Some(group) = data.get(..size as usize) else {
                                if size > MAX_PENDING {
                                    self.block_seen(start, u64::MAX, false);
                                }
                                return Ok(());
                            };
                            let mut at = 0usize;
                            let (mut track, mut referenced) = (None, false);
                            while let Some(c) = header(group.get(at..).unwrap_or_default())? {
                                let csize = c.size.ok_or_else(|| bad("a block of unknown size"))?;
                                match c.id {
                                    BLOCK => {
                                        track = group
                                            .get(at + c.len..)
                                            .map(|b| vint(b, false))
                                            .transpose()?
                                            .flatten()
                                            .map(|(t, _)| t)
                                    }
                                    REFERENCE_BLOCK => referenced = true,
                                    _ => {}
                                }
                                let Some(next) = usize::try_from(csize)
                                    .ok()
                                    .and_then(|s| at.checked_add(c.len)?.checked_add(s))
                                else {
                                    break;
                                };
                                at = next;
                            }
                            if let Some(t) = track {
                                self.block_seen(start, t, !referenced);
                            }
                        }
                        _ => {}
                    }
                    self.scan = self.scan.saturating_add(h.len as u64).saturating_add(size);
                }
            }
        }
    }

    /// A block of the Cluster at `start`: the first video one decides.
    fn block_seen(&mut self, start: u64, track: u64, keyframe: bool) {
        let video = self.video_track.is_none_or(|v| v == track);
        if let Some(b) = self.boundaries.back_mut().filter(|b| b.at == start) {
            if video && b.key.is_none() {
                b.key = Some(keyframe);
            }
        }
    }

    /// A Cluster ended without a video block: a key only for audio alone.
    fn cluster_done(&mut self, start: u64) {
        let audio_only = self.video_track.is_none();
        if let Some(b) = self.boundaries.back_mut().filter(|b| b.at == start) {
            b.key.get_or_insert(audio_only);
        }
    }

    /// Cuts pieces up to what is decided (everything at the end).
    fn cut(&mut self, out: &mut Vec<Cut>, all: bool) {
        let mut upto = self.end();
        if !all {
            // The bytes at `scan` are an element header not yet whole: a
            // Cluster may begin there.
            upto = upto.min(self.scan);
            // A Cluster still undecided holds back the bytes from its
            // start, unless it has waited too long.
            if let Some(b) = self.boundaries.iter().find(|b| b.key.is_none()) {
                if self.end().saturating_sub(b.at) <= MAX_PENDING {
                    upto = b.at.max(self.emitted);
                }
            }
        }
        while self.emitted < upto {
            let from = self.emitted;
            let to = self
                .boundaries
                .iter()
                .map(|b| b.at)
                .find(|&at| at > from && at < upto)
                .unwrap_or(upto);
            let data = self.slice(from, to);
            let starts = self
                .boundaries
                .iter()
                .position(|b| b.at == from)
                .and_then(|i| self.boundaries.remove(i))
                .or(self.starts.take());
            self.emitted = to;
            if data.is_empty() {
                break;
            }
            out.push(Cut::Piece {
                data,
                key: starts.and_then(|b| b.key).unwrap_or(false),
                time: starts.and_then(|b| b.time),
            });
        }
        // A decided boundary where the next piece begins starts it.
        if let Some(i) = self.boundaries.iter().position(|b| b.at == self.emitted) {
            if self.boundaries.get(i).is_some_and(|b| b.key.is_some()) {
                self.starts = self.boundaries.remove(i);
            }
        }
        self.boundaries.retain(|b| b.at >= self.emitted);
        // Keep what is not cut, and what the scan has still to read.
        let keep_from = self.emitted.min(self.scan).max(self.base);
        let drop = usize::try_from(keep_from - self.base)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        self.buf.drain(..drop);
        self.base += drop as u64;
    }

    fn slice(&self, from: u64, to: u64) -> Vec<u8> {
        let len = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        let b = self.bytes_at(from);
        b.get(..len.min(b.len())).unwrap_or_default().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::webm::tests::el;

    const EBML: u32 = 0x1A45_DFA3;
    const DOC_TYPE: u32 = 0x4282;
    const SEGMENT: u32 = 0x1853_8067;
    const INFO: u32 = 0x1549_A966;
    const TRACKS: u32 = 0x1654_AE6B;
    const TRACK_ENTRY: u32 = 0xAE;

    fn uint(id: u32, v: u64) -> Vec<u8> {
        el(id, &v.to_be_bytes())
    }

    /// The head of a recording: Segment and Clusters of unknown size, as
    /// a MediaRecorder writes them (video track 1, audio track 2).
    fn head() -> Vec<u8> {
        let tracks = el(
            TRACKS,
            &[
                el(
                    TRACK_ENTRY,
                    &[uint(0xD7, 1), uint(0x83, 1), el(0x86, b"V_VP8")].concat(),
                ),
                el(
                    TRACK_ENTRY,
                    &[uint(0xD7, 2), uint(0x83, 2), el(0x86, b"A_OPUS")].concat(),
                ),
            ]
            .concat(),
        );
        let info = el(INFO, &uint(0x2A_D7B1, 1_000_000));
        let mut out = el(EBML, &el(DOC_TYPE, b"webm"));
        // Segment of unknown size: ID, then 0x01FF_FFFF_FFFF_FFFF.
        out.extend_from_slice(&SEGMENT.to_be_bytes());
        out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        out.extend_from_slice(&info);
        out.extend_from_slice(&tracks);
        out
    }

    fn block(track: u8, key: bool, len: usize) -> Vec<u8> {
        let mut data = vec![0x80 | track, 0, 0, if key { 0x80 } else { 0 }];
        data.extend(std::iter::repeat_n(0x5A, len));
        el(SIMPLE_BLOCK, &data)
    }

    /// A Cluster of unknown size at `ms`: an audio block, then video.
    fn cluster(ms: u64, key: bool) -> Vec<u8> {
        let mut out = CLUSTER.to_be_bytes().to_vec();
        out.push(0xFF); // unknown size, 1 byte
        out.extend(uint(TIMECODE, ms));
        out.extend(block(2, true, 50));
        out.extend(block(1, key, 3000));
        out.extend(block(1, false, 2000));
        out
    }

    fn pieces(cuts: &[Cut]) -> Vec<(usize, bool, Option<f64>)> {
        cuts.iter()
            .filter_map(|c| match c {
                Cut::Piece { data, key, time } => Some((data.len(), *key, *time)),
                Cut::Init { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_recording_in_any_slices_cuts_into_the_same_keyed_pieces() {
        let head = head();
        let clusters = [cluster(0, true), cluster(1000, false), cluster(2000, true)];
        let all = [head.clone(), clusters.concat()].concat();
        // In one go.
        let mut c = LiveCutter::default();
        let mut cuts = c.push(&all).unwrap();
        cuts.extend(c.finish());
        let Cut::Init { data, mse_type } = &cuts[0] else {
            panic!("the init segment first: {cuts:?}");
        };
        assert_eq!(data, &head);
        assert_eq!(mse_type, "video/webm; codecs=\"vp8,opus\"");
        let whole = pieces(&cuts);
        assert_eq!(
            whole,
            vec![
                (clusters[0].len(), true, Some(0.0)),
                (clusters[1].len(), false, Some(1.0)),
                (clusters[2].len(), true, Some(2.0)),
            ]
        );
        // In slices of every size: the same bytes, the same keys at the
        // same places.
        for step in [1, 7, 100, 1000, 4096] {
            let mut c = LiveCutter::default();
            let mut cuts = Vec::new();
            for s in all.chunks(step) {
                cuts.extend(c.push(s).unwrap());
            }
            cuts.extend(c.finish());
            let bytes: Vec<u8> = cuts
                .iter()
                .flat_map(|c| match c {
                    Cut::Init { data, .. } | Cut::Piece { data, .. } => data.clone(),
                })
                .collect();
            assert_eq!(bytes, all, "step {step}");
            // Pieces that begin a Cluster carry its time.
            let keys: Vec<(bool, Option<f64>)> = pieces(&cuts)
                .into_iter()
                .filter(|(_, _, t)| t.is_some())
                .map(|(_, k, t)| (k, t))
                .collect();
            assert!(
                pieces(&cuts).iter().all(|(_, k, t)| t.is_some() || !k),
                "only a Cluster's start is a key"
            );
            assert_eq!(
                keys,
                vec![(true, Some(0.0)), (false, Some(1.0)), (true, Some(2.0))],
                "step {step}"
            );
        }
    }

    #[test]
    fn bytes_flow_out_before_the_cluster_ends() {
        let head = head();
        let mut c = LiveCutter::default();
        let mut cuts = c.push(&head).unwrap();
        let cl = cluster(0, true);
        // Up to the middle of the first video block: decided, so out.
        cuts.extend(c.push(&cl[..200]).unwrap());
        assert_eq!(pieces(&cuts), vec![(200, true, Some(0.0))]);
        cuts.extend(c.push(&cl[200..]).unwrap());
        assert_eq!(pieces(&cuts).iter().map(|p| p.0).sum::<usize>(), cl.len());
    }

    #[test]
    fn garbage_and_unfollowable_streams_are_errors() {
        assert!(LiveCutter::default().push(&[0xFF; 64]).is_err());
        let mut big = head();
        big.extend(el(0xEC, &vec![0; MAX_INIT])); // Void before the clusters
        big.extend(cluster(0, true));
        assert!(matches!(
            LiveCutter::default().push(&big),
            Err(MediaError::TooLarge(_))
        ));
        // A cluster child of unknown size.
        let mut odd = head();
        odd.extend(CLUSTER.to_be_bytes());
        odd.push(0xFF);
        odd.extend([0xA3, 0xFF]);
        assert!(LiveCutter::default().push(&odd).is_err());
    }
}
