//! Media files played while they download (docs/PROTOCOL.md "Streaming"):
//! what a player needs of a WebM or fragmented MP4 file to feed it to
//! MediaSource — the type with its codecs, the initialization segment,
//! and where playback may start for a given time (WebM Cues, MP4 `sidx`)
//! — and `Playback`, which decides which bytes to append next.
//!
//! Everything here reads bytes handed to it and never panics on them: a
//! downloaded file is whatever its seeder made.

pub mod live;
pub mod live_play;
pub mod mp4;
pub mod playback;
pub mod webm;

pub use playback::{Playback, Step};

/// The biggest head (bytes before the first cluster or fragment) a probe
/// reads: headers are a few kB; more is a file built to waste memory.
pub const MAX_HEAD: u64 = 8 << 20;
/// The biggest index (WebM Cues) a probe reads.
pub const MAX_INDEX: u64 = 8 << 20;
/// Seek points kept (one per second is 36,000 for ten hours).
pub const MAX_POINTS: usize = 1 << 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    WebM,
    Mp4,
}

/// A place where playback may begin: a WebM cluster or an MP4 fragment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeekPoint {
    /// Seconds from the start of the presentation.
    pub time: f64,
    /// Byte offset in the file.
    pub offset: u64,
}

/// What a player needs to feed a file to MediaSource.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaIndex {
    pub container: Container,
    /// The MIME type with its codecs, as `MediaSource.addSourceBuffer`
    /// takes it (`video/webm; codecs="vp9,opus"`).
    pub mse_type: String,
    /// Bytes `[0, init_end)` are the initialization segment.
    pub init_end: u64,
    /// Where the media data begins (the first cluster or fragment).
    pub media_start: u64,
    /// Seek points by time (ascending); empty when the file has no index,
    /// and then it plays from the start and seeks within what is buffered.
    pub points: Vec<SeekPoint>,
    /// The index lies at this offset, after the media (WebM Cues as
    /// ffmpeg writes them): `probe` again with that region gives the
    /// points. Playback need not wait for it; a seek does.
    pub deferred_index: Option<u64>,
    /// Seconds, when the file says.
    pub duration: Option<f64>,
}

impl MediaIndex {
    /// The offset to append from to play at `time`: the last seek point
    /// at or before it (the media start when there is none).
    pub fn offset_for(&self, time: f64) -> u64 {
        let i = self.points.partition_point(|p| p.time <= time);
        i.checked_sub(1)
            .and_then(|i| self.points.get(i))
            .map_or(self.media_start, |p| p.offset)
    }

    /// Where the cluster or fragment that holds `time` ends: the next
    /// seek point's offset, or `end` (where the media ends) after the last
    /// one. A player needs all of it: an MP4 fragment keeps its audio after
    /// its video.
    pub fn segment_end(&self, time: f64, end: u64) -> u64 {
        let i = self.points.partition_point(|p| p.time <= time);
        self.points.get(i).map_or(end, |p| p.offset.min(end))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("{0} files do not play while they download (only WebM and MP4 do)")]
    NotMedia(String),
    #[error("this MP4 is not fragmented: it plays once it is downloaded (remux it with `ffmpeg -i in.mp4 -c copy -movflags +frag_keyframe+empty_moov+default_base_moof+global_sidx out.mp4` to stream it)")]
    NotFragmented,
    #[error("codec {0} does not play through MediaSource")]
    Codec(String),
    #[error("{0} does not play through MediaSource (it plays once downloaded)")]
    Container(String),
    #[error("the file is not valid {0}: {1}")]
    Malformed(&'static str, &'static str),
    #[error("the headers are larger than {0} bytes")]
    TooLarge(u64),
}

/// Where a probe stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Call again with these bytes of the file as well (`[from, to)`).
    Need {
        from: u64,
        to: u64,
    },
    Ready(MediaIndex),
    Failed(MediaError),
}

/// The container a MIME type names, if it is one that streams.
pub fn container_of(mime: &str) -> Option<Container> {
    let essence = mime.split(';').next().unwrap_or("").trim();
    match essence.to_ascii_lowercase().as_str() {
        "video/webm" | "audio/webm" => Some(Container::WebM),
        "video/mp4" | "audio/mp4" | "video/x-m4v" | "audio/x-m4a" => Some(Container::Mp4),
        _ => None,
    }
}

/// Reads what a player needs of a file of `size` bytes and type `mime`.
/// `head` is a prefix of the file; `extra` another region of it
/// (offset, bytes), the one an earlier call asked for beyond the head.
pub fn probe(mime: &str, size: u64, head: &[u8], extra: Option<(u64, &[u8])>) -> Probe {
    match container_of(mime) {
        Some(Container::WebM) => webm::probe(size, head, extra),
        Some(Container::Mp4) => mp4::probe(size, head),
        None => Probe::Failed(MediaError::NotMedia(if mime.is_empty() {
            "untyped".into()
        } else {
            mime.into()
        })),
    }
}

/// Big-endian unsigned integer of up to 8 bytes.
fn be_uint(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x))
}

/// Asks for the head up to `to` (at most the file, at most `MAX_HEAD`).
fn need_head(size: u64, to: u64) -> Probe {
    if to > MAX_HEAD {
        return Probe::Failed(MediaError::TooLarge(MAX_HEAD));
    }
    Probe::Need {
        from: 0,
        to: to.min(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seek_goes_to_the_last_point_at_or_before_the_time() {
        let index = MediaIndex {
            container: Container::WebM,
            mse_type: String::new(),
            init_end: 10,
            media_start: 10,
            points: vec![
                SeekPoint {
                    time: 0.0,
                    offset: 10,
                },
                SeekPoint {
                    time: 1.0,
                    offset: 500,
                },
                SeekPoint {
                    time: 2.0,
                    offset: 900,
                },
            ],
            deferred_index: None,
            duration: Some(3.0),
        };
        assert_eq!(index.offset_for(-1.0), 10);
        assert_eq!(index.offset_for(0.5), 10);
        assert_eq!(index.offset_for(1.0), 500);
        assert_eq!(index.offset_for(1.99), 500);
        assert_eq!(index.offset_for(60.0), 900);
        // The segment holding a time ends at the next point, the last one
        // where the media ends.
        assert_eq!(index.segment_end(-1.0, 1300), 10);
        assert_eq!(index.segment_end(0.5, 1300), 500);
        assert_eq!(index.segment_end(1.0, 1300), 900);
        assert_eq!(index.segment_end(2.5, 1300), 1300);
    }

    #[test]
    fn only_webm_and_mp4_stream() {
        assert_eq!(
            container_of("video/webm; codecs=vp9"),
            Some(Container::WebM)
        );
        assert_eq!(container_of("VIDEO/MP4"), Some(Container::Mp4));
        assert!(matches!(
            probe("application/zip", 10, &[], None),
            Probe::Failed(MediaError::NotMedia(_))
        ));
    }
}
