//! Which bytes of a downloading media file to append to MediaSource next,
//! sans IO. The player appends the initialization segment, then the media
//! from the first cluster or fragment on, in order, as blocks are stored
//! (the blocks held in a row in one append, up to `MAX_APPEND_BLOCKS`; the
//! initialization segment with them when the media follows it at once);
//! a seek outside what is buffered moves the append
//! position to the seek point before the target (after the SourceBuffer is
//! reset), and the download is asked to fetch from there first
//! (`wanted_block`).

use std::collections::BTreeSet;

use super::MediaIndex;

/// No more is appended while this many seconds are buffered ahead of the
/// play position: MediaSource keeps what it is given in memory.
pub const MAX_AHEAD_SECS: f64 = 60.0;
/// `guess_block` aims this far before a seek's target: keyframes come
/// every second or two in files made to stream.
const GUESS_EARLY_SECS: f64 = 1.0;
/// A seek needs the media from the seek point before its target to the
/// end of the cluster or fragment this far past it to play
/// (`seek_blocks`).
pub const SEEK_PLAY_SECS: f64 = 0.5;
/// Blocks held in a row go in one append, up to this many: each append
/// waits for the one before it to end (`updateend`, a round trip through
/// the element's media thread), ~20 ms a block on a busy machine, while
/// the first frame waits for the first three blocks.
pub const MAX_APPEND_BLOCKS: u64 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Append bytes `[from, to)` of the file (from blocks held); reset
    /// the SourceBuffer first when `reset` (after a seek, the parser must
    /// start again at a cluster or fragment). Then `appended`.
    Append { from: u64, to: u64, reset: bool },
    /// Everything is appended: end the stream.
    End,
    /// Waiting for block `block` to be stored.
    WaitFor(u32),
    /// Nothing to do now (an append in flight, or enough buffered).
    Idle,
}

#[derive(Debug)]
pub struct Playback {
    index: MediaIndex,
    size: u64,
    block_len: u64,
    have: BTreeSet<u32>,
    /// The next byte to append.
    at: u64,
    /// The initialization segment is appended.
    init_done: bool,
    /// The end of the append in flight.
    in_flight: Option<u64>,
    /// A seek moved `at` while an append was in flight.
    moved: bool,
    /// The next append follows a seek.
    reset: bool,
    ended: bool,
    /// Where to go once the initialization segment is in (a seek before).
    start_at: Option<u64>,
}

impl Playback {
    /// Plays `index` of a file of `size` bytes in blocks of `block_len`,
    /// of which `have` are stored.
    pub fn new(
        index: MediaIndex,
        size: u64,
        block_len: u32,
        have: impl IntoIterator<Item = u32>,
    ) -> Self {
        Playback {
            index,
            size,
            block_len: u64::from(block_len.max(1)),
            have: have.into_iter().collect(),
            at: 0,
            init_done: false,
            in_flight: None,
            moved: false,
            reset: false,
            ended: false,
            start_at: None,
        }
    }

    pub fn index(&self) -> &MediaIndex {
        &self.index
    }

    /// The index, read since playback began (`MediaIndex::deferred_index`).
    pub fn set_index(&mut self, index: MediaIndex) {
        self.index = index;
    }

    /// The next byte to append.
    pub fn position(&self) -> u64 {
        self.at
    }

    pub fn stored(&mut self, block: u32) {
        self.have.insert(block);
    }

    fn block_of(&self, offset: u64) -> u32 {
        u32::try_from(offset / self.block_len).unwrap_or(u32::MAX)
    }

    /// The block the download should fetch first: the one the player
    /// appends from next.
    pub fn wanted_block(&self) -> u32 {
        self.block_of(self.at.min(self.size.saturating_sub(1)))
    }

    /// A guess at the block a seek to `time` will want while the index is
    /// not read yet (it lies after the media): the media's bytes taken as
    /// spread evenly over its duration, a second early for the keyframe
    /// before the target. `None` when the file says no duration, or the
    /// index is known.
    pub fn guess_block(&self, time: f64) -> Option<u32> {
        let end = self.index.deferred_index?;
        let duration = self.index.duration.filter(|d| *d > 0.0)?;
        let media = end.saturating_sub(self.index.media_start) as f64;
        let fraction = ((time - GUESS_EARLY_SECS) / duration).clamp(0.0, 1.0);
        let offset = self.index.media_start + (media * fraction) as u64;
        Some(self.block_of(offset.min(end)))
    }

    /// The blocks a seek to `time` needs to start playing: from the one
    /// holding the seek point before the target to the one where the
    /// segment holding `SEEK_PLAY_SECS` past it ends (by the index; a
    /// download asks for them alone until the element plays).
    pub fn seek_blocks(&self, time: f64) -> (u32, u32) {
        let last = self.size.saturating_sub(1);
        let from = self.index.offset_for(time).min(last);
        let end = self.index.deferred_index.unwrap_or(self.size);
        let to = self
            .index
            .segment_end(time + SEEK_PLAY_SECS, end)
            .saturating_sub(1)
            .clamp(from, last);
        (self.block_of(from), self.block_of(to))
    }

    /// What to do now, with `ahead` seconds buffered past the play
    /// position.
    pub fn next(&mut self, ahead: f64) -> Step {
        if self.in_flight.is_some() || self.ended {
            return Step::Idle;
        }
        if self.at >= self.size {
            self.ended = true;
            return Step::End;
        }
        if self.init_done && ahead > MAX_AHEAD_SECS {
            return Step::Idle;
        }
        let block = self.block_of(self.at);
        if !self.have.contains(&block) {
            return Step::WaitFor(block);
        }
        // The initialization segment alone when the media does not follow
        // it (an MP4 index between) or a seek chose where it starts.
        let media_follows =
            self.start_at.is_none() && self.index.media_start == self.index.init_end;
        let limit = if self.init_done || media_follows {
            self.size
        } else {
            self.index.init_end
        };
        let mut to = (u64::from(block) + 1) * self.block_len;
        let mut blocks = 1;
        while to < limit && blocks < MAX_APPEND_BLOCKS && self.have.contains(&self.block_of(to)) {
            to += self.block_len;
            blocks += 1;
        }
        let to = to.min(limit).min(self.size);
        self.in_flight = Some(to);
        Step::Append {
            from: self.at,
            to,
            reset: std::mem::take(&mut self.reset),
        }
    }

    /// The append from `next` is done (or was dropped by a reset).
    pub fn appended(&mut self) {
        let Some(to) = self.in_flight.take() else {
            return;
        };
        if std::mem::take(&mut self.moved) {
            return;
        }
        self.at = to;
        if !self.init_done && self.at >= self.index.init_end {
            self.init_done = true;
            match self.start_at.take() {
                // A seek came while the append ran on into the media: the
                // parser starts again at the seek point.
                Some(at) => {
                    self.reset = self.at > self.index.init_end;
                    self.at = at;
                }
                None if self.at == self.index.init_end => self.at = self.index.media_start,
                // The media followed in the same append.
                None => {}
            }
        }
    }

    /// The append from `next` did not happen (the SourceBuffer was full):
    /// it is asked again by the next `next`.
    pub fn append_dropped(&mut self) {
        self.in_flight = None;
        self.moved = false;
    }

    /// The viewer seeks to `time` (seconds), outside what is buffered:
    /// appending goes on from the seek point before it.
    pub fn seek(&mut self, time: f64) {
        let offset = self.index.offset_for(time);
        // During the init segment the position does not move: the append
        // in flight still counts.
        if self.in_flight.is_some() && self.init_done {
            self.moved = true;
        }
        if self.init_done {
            self.at = offset;
            self.reset = true;
        } else {
            self.start_at = Some(offset);
        }
        self.ended = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Container, SeekPoint};

    fn index() -> MediaIndex {
        // Init 0..150, clusters at 150, 1000, 2000, 3000 (1 s each);
        // file of 4000 bytes in blocks of 400.
        MediaIndex {
            container: Container::WebM,
            mse_type: "video/webm; codecs=\"vp9\"".into(),
            init_end: 150,
            media_start: 150,
            points: [150, 1000, 2000, 3000]
                .iter()
                .enumerate()
                .map(|(i, &o)| SeekPoint {
                    time: i as f64,
                    offset: o,
                })
                .collect(),
            deferred_index: None,
            duration: Some(4.0),
        }
    }

    /// Runs the player with every block stored: the bytes it appends.
    fn drain(p: &mut Playback) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        loop {
            match p.next(0.0) {
                Step::Append {
                    from, to, reset, ..
                } => {
                    out.push((from, to, reset));
                    p.appended();
                }
                Step::End => return out,
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn it_appends_in_order_what_is_held_a_few_blocks_at_a_time() {
        let mut p = Playback::new(index(), 4000, 400, []);
        assert_eq!(p.next(0.0), Step::WaitFor(0));
        assert_eq!(p.wanted_block(), 0);
        p.stored(0);
        p.stored(2);
        // The media follows the init segment: both go in one append, up
        // to the missing block 1.
        let first = Step::Append {
            from: 0,
            to: 400,
            reset: false,
        };
        assert_eq!(p.next(0.0), first);
        assert_eq!(p.next(0.0), Step::Idle, "one append at a time");
        p.appended();
        assert_eq!(p.next(0.0), Step::WaitFor(1), "block 2 waits for block 1");
        assert_eq!(p.wanted_block(), 1);
        for b in 1..10 {
            p.stored(b);
        }
        let rest = drain(&mut p);
        assert_eq!(
            rest.first(),
            Some(&(400, 400 + MAX_APPEND_BLOCKS * 400, false))
        );
        assert_eq!(rest.last().map(|r| r.1), Some(4000));
        assert!(rest.windows(2).all(|w| w[0].1 == w[1].0), "contiguous");
        assert!(rest
            .iter()
            .all(|(from, to, _)| to - from <= MAX_APPEND_BLOCKS * 400));
    }

    #[test]
    fn an_init_segment_the_media_does_not_follow_goes_alone() {
        // An MP4 index (sidx) between the init segment and the media.
        let mut i = index();
        i.media_start = 180;
        let mut p = Playback::new(i, 4000, 400, 0..10);
        let all = drain(&mut p);
        assert_eq!(all[0], (0, 150, false));
        assert_eq!(all[1], (180, 1600, false));
    }

    #[test]
    fn a_seek_resets_and_appends_from_the_cluster_before_the_target() {
        let mut p = Playback::new(index(), 4000, 400, 0..10);
        drain_until(&mut p, 800);
        p.seek(2.5);
        assert_eq!(p.wanted_block(), 5);
        assert_eq!(
            p.next(0.0),
            Step::Append {
                from: 2000,
                to: 3600,
                reset: true
            }
        );
        p.appended();
        assert!(matches!(
            p.next(0.0),
            Step::Append {
                from: 3600,
                reset: false,
                ..
            }
        ));
    }

    #[test]
    fn a_seek_during_an_append_drops_that_append_and_a_seek_after_the_end_reopens() {
        let mut p = Playback::new(index(), 4000, 400, 0..10);
        drain_until(&mut p, 400);
        assert!(matches!(p.next(0.0), Step::Append { from: 1600, .. }));
        p.seek(1.2);
        p.appended();
        assert!(matches!(
            p.next(0.0),
            Step::Append {
                from: 1000,
                reset: true,
                ..
            }
        ));
        p.appended();
        drain(&mut p);
        assert_eq!(p.next(0.0), Step::Idle, "ended");
        p.seek(0.1);
        assert!(matches!(
            p.next(0.0),
            Step::Append {
                from: 150,
                reset: true,
                ..
            }
        ));
    }

    #[test]
    fn a_seek_before_the_init_segment_is_in_starts_there() {
        let mut p = Playback::new(index(), 4000, 400, 0..10);
        p.seek(3.5);
        // The init segment alone: the media appended next starts at 3 s.
        assert_eq!(
            p.next(0.0),
            Step::Append {
                from: 0,
                to: 150,
                reset: false
            }
        );
        p.appended();
        assert!(matches!(
            p.next(0.0),
            Step::Append {
                from: 3000,
                reset: false,
                ..
            }
        ));
    }

    #[test]
    fn a_seek_while_the_init_segment_is_appended_does_not_append_it_twice() {
        let mut index = index();
        index.init_end = 600;
        index.media_start = 600;
        index.points[0].offset = 600;
        let mut p = Playback::new(index, 4000, 400, 0..10);
        // The init segment and the media after it, four blocks.
        assert!(matches!(
            p.next(0.0),
            Step::Append {
                from: 0,
                to: 1600,
                ..
            }
        ));
        p.seek(2.5);
        p.appended();
        // The parser stopped inside a cluster: it starts again at 2 s.
        assert!(matches!(
            p.next(0.0),
            Step::Append {
                from: 2000,
                reset: true,
                ..
            }
        ));
    }

    #[test]
    fn before_its_index_a_seek_guesses_a_block_a_second_early() {
        // Media from 150 to 3950 (the index after it), 4 s: ~950 bytes a
        // second, blocks of 400.
        let mut i = index();
        i.points.clear();
        i.deferred_index = Some(3950);
        let p = Playback::new(i.clone(), 4000, 400, []);
        // 3.5 s: a second early is 2.5 s, byte 150 + 2375 = 2525, block 6.
        assert_eq!(p.guess_block(3.5), Some(6));
        assert_eq!(p.guess_block(0.2), Some(0));
        assert_eq!(p.guess_block(99.0), Some(9));
        // Once the index is known, or without a duration, no guess.
        assert_eq!(Playback::new(index(), 4000, 400, []).guess_block(3.5), None);
        i.duration = None;
        assert_eq!(Playback::new(i, 4000, 400, []).guess_block(3.5), None);
    }

    #[test]
    fn a_seek_needs_the_blocks_from_its_point_to_the_segment_half_a_second_past_it() {
        // Clusters at 0, 1, 2, 3 s (150, 1000, 2000, 3000), blocks of 400.
        let p = Playback::new(index(), 4000, 400, []);
        // 2.2 s: from the point at 2 s (byte 2000, block 5) to the end
        // of the cluster holding 2.7 s (byte 2999, block 7).
        assert_eq!(p.seek_blocks(2.2), (5, 7));
        // 2.6 s: to the end of the next cluster, the file's.
        assert_eq!(p.seek_blocks(2.6), (5, 9));
        assert_eq!(p.seek_blocks(0.0), (0, 2));
    }

    #[test]
    fn nothing_more_is_appended_while_a_minute_is_buffered() {
        let mut p = Playback::new(index(), 4000, 400, 0..10);
        drain_until(&mut p, 400);
        assert_eq!(p.next(MAX_AHEAD_SECS + 1.0), Step::Idle);
        assert!(matches!(p.next(1.0), Step::Append { .. }));
    }

    fn drain_until(p: &mut Playback, offset: u64) {
        while p.position() < offset {
            assert!(matches!(p.next(0.0), Step::Append { .. }));
            p.appended();
        }
    }
}
