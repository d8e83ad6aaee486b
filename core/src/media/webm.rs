//! WebM (Matroska's subset, RFC 9559 for EBML and the elements used here)
//! as MediaSource takes it: the EBML header and the Segment's headers up
//! to the first Cluster are the initialization segment; Cues give the
//! cluster to start from for a time; SeekHead says where the Cues are when
//! they come after the clusters (ffmpeg writes them at the end).

use super::{be_uint, need_head, Container, MediaError, MediaIndex, Probe, SeekPoint};
use super::{MAX_INDEX, MAX_POINTS};

const EBML: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CUES: u32 = 0x1C53_BB6B;
const CUE_POINT: u32 = 0xBB;
const CUE_TIME: u32 = 0xB3;
const CUE_TRACK_POSITIONS: u32 = 0xB7;
const CUE_CLUSTER_POSITION: u32 = 0xF1;
pub(crate) const CLUSTER: u32 = 0x1F43_B675;
const TRACK_NUMBER: u32 = 0xD7;

/// The longest element header: a 4-byte ID and an 8-byte size.
const MAX_HEADER: u64 = 12;

fn bad(what: &'static str) -> MediaError {
    MediaError::Malformed("WebM", what)
}

/// An element's header: its ID, where its data begins (relative to the
/// bytes read), and its size (`None`: unknown, to the end of its parent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) id: u32,
    pub(crate) len: usize,
    pub(crate) size: Option<u64>,
}

/// Reads an element header at the start of `b`; `Ok(None)` when `b` ends
/// before it does.
pub(crate) fn header(b: &[u8]) -> Result<Option<Header>, MediaError> {
    let Some((id, id_len)) = vint(b, true)? else {
        return Ok(None);
    };
    if id_len > 4 {
        return Err(bad("an element ID longer than 4 bytes"));
    }
    let Some((size, size_len)) = b
        .get(id_len..)
        .map(|r| vint(r, false))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    // All value bits set: unknown size.
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    Ok(Some(Header {
        id: id as u32,
        len: id_len + size_len,
        size: (!unknown).then_some(size),
    }))
}

/// An EBML variable-length integer: its value (with the length marker
/// when `keep_marker`, as IDs are written) and its length.
pub(crate) fn vint(b: &[u8], keep_marker: bool) -> Result<Option<(u64, usize)>, MediaError> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    if first == 0 {
        return Err(bad("a variable-length integer longer than 8 bytes"));
    }
    let len = first.leading_zeros() as usize + 1;
    let Some(bytes) = b.get(..len) else {
        return Ok(None);
    };
    let mut v = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & (0xFF >> len)
    };
    for &x in bytes.iter().skip(1) {
        v = (v << 8) | u64::from(x);
    }
    Ok(Some((v, len)))
}

/// The children of a master element whose data is `b` (all of it):
/// (id, data). A child running past `b` is malformed.
fn children(b: &[u8]) -> Result<Vec<(u32, &[u8])>, MediaError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < b.len() {
        let rest = b.get(at..).unwrap_or_default();
        let h = header(rest)?.ok_or_else(|| bad("a truncated element"))?;
        let size = h
            .size
            .ok_or_else(|| bad("an unknown size inside a header"))?;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_add(h.len))
            .filter(|&e| e <= rest.len())
            .ok_or_else(|| bad("an element longer than its parent"))?;
        out.push((h.id, rest.get(h.len..end).unwrap_or_default()));
        at += end;
        // Cues hold one child per seek point; nothing else needs more.
        if out.len() > MAX_POINTS {
            return Err(bad("too many elements"));
        }
    }
    Ok(out)
}

fn float(b: &[u8]) -> Option<f64> {
    match b.len() {
        4 => Some(f64::from(f32::from_be_bytes(b.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// What the Segment's headers say.
#[derive(Default, Clone)]
struct Headers {
    scale: Option<u64>,
    duration: Option<f64>,
    codecs: Vec<String>,
    video: bool,
    /// The Cues' position, relative to the Segment's data.
    cues_at: Option<u64>,
    points: Option<Vec<SeekPoint>>,
    /// The first video track's number (blocks name their track).
    video_track: Option<u64>,
}

/// The bytes of `head` from `at` on (none past its end, or past what a
/// 32-bit `usize` addresses).
fn at_offset(head: &[u8], at: u64) -> &[u8] {
    usize::try_from(at)
        .ok()
        .and_then(|a| head.get(a..))
        .unwrap_or_default()
}

/// See `super::probe`.
pub fn probe(size: u64, head: &[u8], extra: Option<(u64, &[u8])>) -> Probe {
    match probe_inner(size, head, extra) {
        Ok(p) => p,
        Err(e) => Probe::Failed(e),
    }
}

/// What a live stream's publisher needs of its recording's head: the
/// initialization segment's end and type, the video track, and the
/// timestamp scale. `None` until `head` reaches the first Cluster.
pub(crate) struct LiveHead {
    pub(crate) init_end: u64,
    pub(crate) mse_type: String,
    pub(crate) video_track: Option<u64>,
    /// Nanoseconds per Cluster timecode unit.
    pub(crate) scale: u64,
}

pub(crate) fn live_head(head: &[u8]) -> Result<Option<LiveHead>, MediaError> {
    let mut found = Headers::default();
    // A recording has no size yet: as long as it takes.
    let index = match probe_with(u64::MAX, head, None, &mut found)? {
        Probe::Ready(i) => i,
        Probe::Need { .. } => return Ok(None),
        Probe::Failed(e) => return Err(e),
    };
    Ok(Some(LiveHead {
        init_end: index.init_end,
        mse_type: index.mse_type,
        video_track: found.video_track,
        scale: found.scale.unwrap_or(1_000_000),
    }))
}

fn probe_inner(size: u64, head: &[u8], extra: Option<(u64, &[u8])>) -> Result<Probe, MediaError> {
    probe_with(size, head, extra, &mut Headers::default())
}

fn probe_with(
    size: u64,
    head: &[u8],
    extra: Option<(u64, &[u8])>,
    found: &mut Headers,
) -> Result<Probe, MediaError> {
    let have = head.len() as u64;
    // The EBML header: a WebM document.
    let Some(h) = header(head)? else {
        return Ok(need_head(size, MAX_HEADER));
    };
    if h.id != EBML {
        return Err(bad("no EBML header"));
    }
    let ebml_end = h.len as u64
        + h.size
            .ok_or_else(|| bad("an EBML header of unknown size"))?;
    if have < ebml_end.saturating_add(MAX_HEADER) && have < size {
        return Ok(need_head(size, ebml_end.saturating_add(MAX_HEADER)));
    }
    let doc = usize::try_from(ebml_end)
        .ok()
        .and_then(|e| head.get(h.len..e))
        .unwrap_or_default();
    let doc_type = children(doc)?
        .into_iter()
        .find(|(id, _)| *id == DOC_TYPE)
        .map(|(_, v)| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .to_string()
        });
    if doc_type.as_deref() != Some("webm") {
        let doc: String = doc_type.unwrap_or_else(|| "no DocType".into());
        return Err(MediaError::Container(format!(
            "Matroska ({})",
            doc.chars().take(32).collect::<String>()
        )));
    }
    // The Segment, and its children up to the first Cluster.
    let seg = header(at_offset(head, ebml_end))?.ok_or_else(|| bad("no Segment"))?;
    if seg.id != SEGMENT {
        return Err(bad("no Segment after the EBML header"));
    }
    let seg_start = ebml_end + seg.len as u64;
    let seg_end = seg.size.map_or(size, |s| (seg_start + s).min(size));
    let mut at = seg_start;
    let init_end = loop {
        if at >= seg_end {
            return Err(bad("no Cluster"));
        }
        let rest = at_offset(head, at);
        let Some(h) = header(rest)? else {
            return Ok(need_head(size, at.saturating_add(MAX_HEADER)));
        };
        if h.id == CLUSTER {
            break at;
        }
        let len = h
            .size
            .ok_or_else(|| bad("an element of unknown size before the clusters"))?;
        let end = at
            .checked_add(h.len as u64)
            .and_then(|e| e.checked_add(len))
            .ok_or_else(|| bad("an element too long"))?;
        if matches!(h.id, SEEK_HEAD | INFO | TRACKS | CUES) {
            if end > have {
                return Ok(need_head(size, end + MAX_HEADER));
            }
            let data = head
                .get(at as usize + h.len..end as usize)
                .unwrap_or_default();
            read_top(h.id, data, seg_start, found)?;
        }
        at = end;
    };
    if found.codecs.is_empty() {
        return Err(bad("no track this player knows"));
    }
    let scale = found.scale.unwrap_or(1_000_000);
    // Cues after the clusters: where the SeekHead says. Playback need not
    // wait for them: they are read when `extra` brings them.
    if found.points.is_none() {
        if let Some(pos) = found.cues_at.map(|p| seg_start.saturating_add(p)) {
            if pos > init_end && pos < size {
                let Some((off, bytes)) = extra.filter(|(o, _)| *o == pos) else {
                    return ready(found.clone(), scale, init_end, size, Some(pos));
                };
                let Some(h) = header(bytes)? else {
                    return Ok(Probe::Need {
                        from: off,
                        to: off.saturating_add(MAX_HEADER).min(size),
                    });
                };
                if h.id != CUES {
                    return Err(bad("the SeekHead points at no Cues"));
                }
                let len = h.size.ok_or_else(|| bad("Cues of unknown size"))?;
                if len > MAX_INDEX {
                    return Err(MediaError::TooLarge(MAX_INDEX));
                }
                let end = h.len as u64 + len;
                let Some(data) = bytes.get(h.len..end as usize) else {
                    return Ok(Probe::Need {
                        from: off,
                        to: off.saturating_add(end).min(size),
                    });
                };
                found.points = Some(cues(data, seg_start)?);
            }
        }
    }
    ready(found.clone(), scale, init_end, size, None)
}

fn ready(
    found: Headers,
    scale: u64,
    init_end: u64,
    size: u64,
    deferred_index: Option<u64>,
) -> Result<Probe, MediaError> {
    let mut points = found.points.unwrap_or_default();
    for p in &mut points {
        p.time = p.time * scale as f64 / 1e9;
    }
    points.retain(|p| p.offset >= init_end && p.offset < size);
    points.sort_by(|a, b| a.time.total_cmp(&b.time));
    points.dedup_by_key(|p| p.offset);
    let kind = if found.video { "video" } else { "audio" };
    Ok(Probe::Ready(MediaIndex {
        container: Container::WebM,
        mse_type: format!("{kind}/webm; codecs=\"{}\"", found.codecs.join(",")),
        init_end,
        media_start: init_end,
        points,
        deferred_index,
        duration: found
            .duration
            .map(|d| d * scale as f64 / 1e9)
            .filter(|d| d.is_finite() && *d > 0.0),
    }))
}

/// One of the Segment's header elements.
fn read_top(id: u32, data: &[u8], seg_start: u64, found: &mut Headers) -> Result<(), MediaError> {
    match id {
        SEEK_HEAD => {
            for (_, seek) in children(data)?.into_iter().filter(|(i, _)| *i == SEEK) {
                let fields = children(seek)?;
                let target = fields.iter().find(|(i, _)| *i == SEEK_ID).map(|(_, v)| *v);
                let pos = fields.iter().find(|(i, _)| *i == SEEK_POSITION);
                if let (Some(t), Some((_, p))) = (target, pos) {
                    if be_uint(t) == u64::from(CUES) && p.len() <= 8 {
                        found.cues_at = Some(be_uint(p));
                    }
                }
            }
        }
        INFO => {
            for (i, v) in children(data)? {
                match i {
                    TIMESTAMP_SCALE if v.len() <= 8 && be_uint(v) > 0 => {
                        found.scale = Some(be_uint(v))
                    }
                    DURATION => found.duration = float(v),
                    _ => {}
                }
            }
        }
        TRACKS => {
            for (_, entry) in children(data)?
                .into_iter()
                .filter(|(i, _)| *i == TRACK_ENTRY)
            {
                let fields = children(entry)?;
                let kind = fields
                    .iter()
                    .find(|(i, _)| *i == TRACK_TYPE)
                    .map(|(_, v)| be_uint(v));
                let codec = fields.iter().find(|(i, _)| *i == CODEC_ID).map(|(_, v)| {
                    String::from_utf8_lossy(v)
                        .trim_end_matches('\0')
                        .to_string()
                });
                let (Some(kind), Some(codec)) = (kind, codec) else {
                    continue;
                };
                // Subtitles and other tracks are not MediaSource's.
                if kind != 1 && kind != 2 {
                    continue;
                }
                let name = match codec.as_str() {
                    "V_VP8" => "vp8",
                    "V_VP9" => "vp9",
                    "A_OPUS" => "opus",
                    "A_VORBIS" => "vorbis",
                    other => return Err(MediaError::Codec(other.chars().take(32).collect())),
                };
                found.video |= kind == 1;
                if kind == 1 && found.video_track.is_none() {
                    found.video_track = fields
                        .iter()
                        .find(|(i, v)| *i == TRACK_NUMBER && v.len() <= 8)
                        .map(|(_, v)| be_uint(v));
                }
                if found.codecs.len() < 8 {
                    found.codecs.push(name.into());
                }
            }
        }
        CUES => found.points = Some(cues(data, seg_start)?),
        _ => {}
    }
    Ok(())
}

/// Cue points: (time in the Segment's timestamp units, cluster offset).
fn cues(data: &[u8], seg_start: u64) -> Result<Vec<SeekPoint>, MediaError> {
    let mut points = Vec::new();
    for (_, point) in children(data)?.into_iter().filter(|(i, _)| *i == CUE_POINT) {
        let fields = children(point)?;
        let Some(time) = fields
            .iter()
            .find(|(i, v)| *i == CUE_TIME && v.len() <= 8)
            .map(|(_, v)| be_uint(v))
        else {
            continue;
        };
        for (_, pos) in fields.iter().filter(|(i, _)| *i == CUE_TRACK_POSITIONS) {
            let cluster = children(pos)?
                .into_iter()
                .find(|(i, v)| *i == CUE_CLUSTER_POSITION && v.len() <= 8)
                .map(|(_, v)| be_uint(v));
            if let Some(c) = cluster {
                if points.len() >= MAX_POINTS {
                    return Ok(points);
                }
                points.push(SeekPoint {
                    time: time as f64,
                    offset: seg_start.saturating_add(c),
                });
            }
        }
    }
    Ok(points)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An element: ID bytes, a size of 8 bytes, the data.
    pub(crate) fn el(id: u32, data: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = id
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x01);
        out.extend_from_slice(&(data.len() as u64).to_be_bytes()[1..]);
        out.extend_from_slice(data);
        out
    }

    fn uint(id: u32, v: u64) -> Vec<u8> {
        el(id, &v.to_be_bytes())
    }

    /// A small WebM: VP9 and Opus, clusters of `cluster_len` bytes at
    /// 1 s apart, Cues after the clusters (as ffmpeg writes them) or
    /// before (`cues_first`).
    pub(crate) fn sample(clusters: usize, cluster_len: usize, cues_first: bool) -> Vec<u8> {
        let ebml = el(EBML, &el(DOC_TYPE, b"webm"));
        let info = el(
            INFO,
            &[
                uint(TIMESTAMP_SCALE, 1_000_000),
                el(DURATION, &(clusters as f64 * 1000.0).to_be_bytes()),
            ]
            .concat(),
        );
        let tracks = el(
            TRACKS,
            &[
                el(
                    TRACK_ENTRY,
                    &[uint(TRACK_TYPE, 1), el(CODEC_ID, b"V_VP9")].concat(),
                ),
                el(
                    TRACK_ENTRY,
                    &[uint(TRACK_TYPE, 2), el(CODEC_ID, b"A_OPUS")].concat(),
                ),
            ]
            .concat(),
        );
        // Positions are relative to the Segment's data; a SeekHead of a
        // fixed size comes first.
        let seek_head_len = el(
            SEEK_HEAD,
            &el(
                SEEK,
                &[el(SEEK_ID, &CUES.to_be_bytes()), uint(SEEK_POSITION, 0)].concat(),
            ),
        )
        .len();
        let cluster = |i: usize| {
            let body = vec![i as u8; cluster_len.saturating_sub(12)];
            el(CLUSTER, &body)
        };
        let clusters_len: usize = (0..clusters).map(|i| cluster(i).len()).sum();
        let cues_for = |first_cluster: u64| {
            let mut at = first_cluster;
            let mut points = Vec::new();
            for i in 0..clusters {
                points.push(el(
                    CUE_POINT,
                    &[
                        uint(CUE_TIME, i as u64 * 1000),
                        el(CUE_TRACK_POSITIONS, &uint(CUE_CLUSTER_POSITION, at)),
                    ]
                    .concat(),
                ));
                at += cluster(i).len() as u64;
            }
            el(CUES, &points.concat())
        };
        let headers_len = seek_head_len + info.len() + tracks.len();
        let cues_len = cues_for(0).len();
        let (first_cluster, cues_at) = if cues_first {
            ((headers_len + cues_len) as u64, headers_len as u64)
        } else {
            (headers_len as u64, (headers_len + clusters_len) as u64)
        };
        let seek_head = el(
            SEEK_HEAD,
            &el(
                SEEK,
                &[
                    el(SEEK_ID, &CUES.to_be_bytes()),
                    uint(SEEK_POSITION, cues_at),
                ]
                .concat(),
            ),
        );
        let cues = cues_for(first_cluster);
        let mut body = [seek_head, info, tracks].concat();
        if cues_first {
            body.extend_from_slice(&cues);
        }
        for i in 0..clusters {
            body.extend_from_slice(&cluster(i));
        }
        if !cues_first {
            body.extend_from_slice(&cues);
        }
        [ebml, el(SEGMENT, &body)].concat()
    }

    /// Probes the way a player does: a growing head, then what it asks.
    pub(crate) fn probe_all(file: &[u8], mime: &str) -> (Probe, usize) {
        let mut head = 0usize;
        let mut extra: Option<(u64, usize)> = None;
        for asks in 0..20 {
            let x = extra.map(|(o, l)| (o, &file[o as usize..(o as usize + l).min(file.len())]));
            match super::super::probe(mime, file.len() as u64, &file[..head], x) {
                Probe::Need { from: 0, to } => head = to as usize,
                Probe::Need { from, to } => extra = Some((from, (to - from) as usize)),
                // The index after the media: 12 bytes first, as a player
                // reading the least it can would.
                Probe::Ready(i) if i.deferred_index.is_some() && extra.is_none() => {
                    extra = i.deferred_index.map(|at| (at, 12));
                }
                done => return (done, asks),
            }
        }
        panic!("the probe never ended");
    }

    #[test]
    fn cues_at_the_end_do_not_hold_playback_up() {
        let file = sample(10, 5000, false);
        let mut head = 12;
        let index = loop {
            match super::super::probe("video/webm", file.len() as u64, &file[..head], None) {
                Probe::Need { from: 0, to } => head = to as usize,
                Probe::Ready(i) => break i,
                other => panic!("{other:?}"),
            }
        };
        assert!(index.points.is_empty());
        let at = index.deferred_index.unwrap() as usize;
        assert!(at > 10 * 5000, "after the clusters");
        assert!(head < 1000, "only the headers were read: {head}");
        let full = super::super::probe(
            "video/webm",
            file.len() as u64,
            &file[..head],
            Some((at as u64, &file[at..])),
        );
        let Probe::Ready(full) = full else {
            panic!("{full:?}")
        };
        assert_eq!(full.points.len(), 10);
        assert_eq!(full.deferred_index, None);
    }

    #[test]
    fn cues_at_the_end_are_read_where_the_seek_head_says() {
        for cues_first in [false, true] {
            let file = sample(10, 5000, cues_first);
            let (Probe::Ready(index), _) = probe_all(&file, "video/webm") else {
                panic!("not ready")
            };
            assert_eq!(index.mse_type, "video/webm; codecs=\"vp9,opus\"");
            assert_eq!(index.duration, Some(10.0));
            assert_eq!(index.points.len(), 10);
            assert_eq!(index.points[0].offset, index.init_end);
            for (i, p) in index.points.iter().enumerate() {
                assert_eq!(p.time, i as f64);
                assert_eq!(
                    &file[p.offset as usize..p.offset as usize + 4],
                    &CLUSTER.to_be_bytes()
                );
            }
            assert_eq!(
                &file[index.init_end as usize..][..4],
                &CLUSTER.to_be_bytes()
            );
        }
    }

    #[test]
    fn matroska_and_unknown_codecs_are_refused_with_their_names() {
        let mkv = [el(EBML, &el(DOC_TYPE, b"matroska")), el(SEGMENT, &[])].concat();
        assert!(matches!(
            super::super::probe("video/webm", mkv.len() as u64, &mkv, None),
            Probe::Failed(MediaError::Container(_))
        ));
        let file = sample(2, 100, true);
        let at = file.windows(5).position(|w| w == b"V_VP9").unwrap();
        let mut hevc = file.clone();
        hevc[at..at + 5].copy_from_slice(b"V_HEV");
        let (r, _) = probe_all(&hevc, "video/webm");
        assert_eq!(r, Probe::Failed(MediaError::Codec("V_HEV".into())));
    }

    #[test]
    fn truncated_and_garbage_input_fails_cleanly() {
        let file = sample(4, 300, false);
        for cut in 0..file.len() {
            let _ = super::super::probe("video/webm", file.len() as u64, &file[..cut], None);
            let _ = super::super::probe("video/webm", cut as u64, &file[..cut], None);
        }
        let garbage = vec![0u8; 64];
        assert!(matches!(
            super::super::probe("video/webm", 64, &garbage, None),
            Probe::Failed(_)
        ));
    }
}
