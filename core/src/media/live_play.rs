//! Where a live player plays, sans IO (docs/PROTOCOL.md "Live streams",
//! the player): given what MediaSource has buffered after each append, and
//! the play position, when to move the position, and the live delay.
//!
//! A joiner gets chunks from two windows back (where a decoder can start)
//! in a burst. It plays `TARGET_BEHIND_SECS` behind the newest media: at
//! its first append, while joining (`JOINING_MS` after it) whenever it is
//! more than a second further behind, when the position is in no buffered
//! range (a skipped chunk left a hole), and when it fell more than
//! `MAX_BEHIND_SECS` behind.

/// A live player plays this far behind the newest media it has.
pub const TARGET_BEHIND_SECS: f64 = 1.5;
/// A player further behind the newest media than this jumps back to
/// `TARGET_BEHIND_SECS`.
pub const MAX_BEHIND_SECS: f64 = 6.0;
/// While joining (this long after the first append) the backlog comes in
/// a burst: the player keeps within a second of `TARGET_BEHIND_SECS`
/// rather than waiting to fall `MAX_BEHIND_SECS` behind.
pub const JOINING_MS: u64 = 5_000;
/// A position this close before a range's start counts as inside it
/// (ranges start at frame boundaries).
const RANGE_SLACK_SECS: f64 = 0.1;

/// What to do after an append.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Move the play position here.
    pub seek_to: Option<f64>,
    /// The first append: start playing.
    pub play: bool,
}

/// A live player's position policy.
#[derive(Debug, Default)]
pub struct LivePosition {
    joined_at: Option<u64>,
}

impl LivePosition {
    pub fn new() -> Self {
        Self::default()
    }

    /// An append ended: `ranges` is what is buffered (ascending), `current`
    /// the play position, `now_ms` the wall clock.
    pub fn after_append(&mut self, now_ms: u64, current: f64, ranges: &[(f64, f64)]) -> Placement {
        let Some(&(last_start, end)) = ranges.last() else {
            return Placement {
                seek_to: None,
                play: false,
            };
        };
        let first = self.joined_at.is_none();
        let joined_at = *self.joined_at.get_or_insert(now_ms);
        let joining = now_ms < joined_at + JOINING_MS;
        let behind = end - current;
        let inside = ranges
            .iter()
            .any(|(s, e)| *s <= current + RANGE_SLACK_SECS && current < *e);
        let jump = first
            || (joining && behind > TARGET_BEHIND_SECS + 1.0)
            || !inside
            || behind > MAX_BEHIND_SECS;
        Placement {
            // The decoder starts from the keyframe before the target,
            // which the last range holds.
            seek_to: jump.then(|| last_start.max(end - TARGET_BEHIND_SECS)),
            play: first,
        }
    }
}

/// Capture to display, ms: how old the newest appended chunk is
/// (`edge_timestamp_ms`, when its media was made, on the publisher's
/// clock), plus how far the play position is behind the end of what was
/// buffered after it (`edge_end`). `None` before playback begins.
pub fn live_delay_ms(
    now_ms: u64,
    edge_timestamp_ms: u64,
    edge_end: f64,
    current: f64,
) -> Option<f64> {
    (current > 0.0).then(|| {
        let behind = (edge_end - current).max(0.0) * 1000.0;
        now_ms as f64 - edge_timestamp_ms as f64 + behind
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_append_plays_a_target_behind_the_newest_media() {
        let mut p = LivePosition::new();
        // A joiner's backlog: 10 s to 14 s; the position is still 0.
        let got = p.after_append(1_000, 0.0, &[(10.0, 14.0)]);
        assert_eq!(
            got,
            Placement {
                seek_to: Some(12.5),
                play: true
            }
        );
        // Less than the target buffered: from the range's start.
        let mut p = LivePosition::new();
        assert_eq!(
            p.after_append(1_000, 0.0, &[(10.0, 11.0)]).seek_to,
            Some(10.0)
        );
        // Nothing buffered yet: nothing to do, and the next append is the first.
        let mut p = LivePosition::new();
        assert_eq!(
            p.after_append(1_000, 0.0, &[]),
            Placement {
                seek_to: None,
                play: false
            }
        );
        assert!(p.after_append(1_100, 0.0, &[(10.0, 14.0)]).play);
    }

    #[test]
    fn while_joining_it_keeps_within_a_second_of_the_target() {
        let mut p = LivePosition::new();
        p.after_append(1_000, 0.0, &[(10.0, 14.0)]);
        // The burst goes on: 2 s behind is within a second of 1.5 s.
        assert_eq!(p.after_append(2_000, 12.6, &[(10.0, 14.6)]).seek_to, None);
        // 2.6 s behind while joining: back to the target.
        assert_eq!(
            p.after_append(3_000, 12.9, &[(10.0, 15.5)]).seek_to,
            Some(14.0)
        );
        // After joining, 5 s behind is let be; more than 6 s is not.
        assert_eq!(p.after_append(7_000, 15.0, &[(10.0, 20.0)]).seek_to, None);
        assert_eq!(
            p.after_append(8_000, 15.0, &[(10.0, 21.5)]).seek_to,
            Some(20.0)
        );
    }

    #[test]
    fn a_position_in_a_hole_jumps_to_the_newest_range() {
        let mut p = LivePosition::new();
        p.after_append(1_000, 0.0, &[(10.0, 14.0)]);
        // A skipped chunk: the position ran out of the first range.
        let got = p.after_append(9_000, 16.0, &[(10.0, 16.0), (16.5, 19.0)]);
        assert_eq!(
            got,
            Placement {
                seek_to: Some(17.5),
                play: false
            }
        );
        // Just before a range's start counts as inside it.
        assert_eq!(
            p.after_append(9_500, 16.45, &[(10.0, 16.0), (16.5, 19.0)])
                .seek_to,
            None
        );
    }

    #[test]
    fn the_delay_is_the_edge_age_plus_what_is_buffered_past_the_position() {
        assert_eq!(live_delay_ms(10_000, 9_000, 20.0, 18.5), Some(2_500.0));
        // Ahead of the edge (it played on): no negative part.
        assert_eq!(live_delay_ms(10_000, 9_000, 20.0, 20.2), Some(1_000.0));
        assert_eq!(live_delay_ms(10_000, 9_000, 20.0, 0.0), None);
    }
}
