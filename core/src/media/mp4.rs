//! Fragmented MP4 (ISO/IEC 14496-12) as MediaSource takes it: `ftyp` and
//! a `moov` with `mvex` are the initialization segment, then `moof`+`mdat`
//! fragments; a `sidx` before the first fragment gives each fragment's
//! time and offset (ffmpeg's `-movflags +global_sidx`). A plain MP4 (its
//! samples in one `mdat`, indexed by the `moov`) cannot be appended as it
//! downloads: `MediaError::NotFragmented`.

use super::MAX_POINTS;
use super::{be_uint, need_head, Container, MediaError, MediaIndex, Probe, SeekPoint};

fn bad(what: &'static str) -> MediaError {
    MediaError::Malformed("MP4", what)
}

/// A box header: type, header length, total length (`None`: to the end
/// of the file).
type BoxHeader = ([u8; 4], usize, Option<u64>);
/// A box: type and data.
type Mp4Box<'a> = ([u8; 4], &'a [u8]);

/// The box header at the start of `b`; `Ok(None)` when `b` is too short.
fn box_header(b: &[u8]) -> Result<Option<BoxHeader>, MediaError> {
    let (Some(size), Some(kind)) = (b.get(..4), b.get(4..8)) else {
        return Ok(None);
    };
    let kind: [u8; 4] = kind.try_into().map_err(|_| bad("a box type"))?;
    match be_uint(size) {
        0 => Ok(Some((kind, 8, None))),
        1 => {
            let Some(large) = b.get(8..16) else {
                return Ok(None);
            };
            let len = be_uint(large);
            if len < 16 {
                return Err(bad("a box shorter than its header"));
            }
            Ok(Some((kind, 16, Some(len))))
        }
        len if len < 8 => Err(bad("a box shorter than its header")),
        len => Ok(Some((kind, 8, Some(len)))),
    }
}

/// The boxes in `b` (all of it): (type, data).
fn boxes(b: &[u8]) -> Result<Vec<Mp4Box<'_>>, MediaError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < b.len() {
        let rest = b.get(at..).unwrap_or_default();
        let (kind, hdr, len) = box_header(rest)?.ok_or_else(|| bad("a truncated box"))?;
        let len = len.map_or(Some(rest.len()), |l| usize::try_from(l).ok());
        let end = len
            .filter(|&l| l <= rest.len())
            .ok_or_else(|| bad("a box longer than its parent"))?;
        out.push((kind, rest.get(hdr..end).unwrap_or_default()));
        at += end;
        if out.len() > 4096 {
            return Err(bad("too many boxes"));
        }
    }
    Ok(out)
}

fn child<'a>(b: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, MediaError> {
    Ok(boxes(b)?
        .into_iter()
        .find(|(k, _)| k == kind)
        .map(|(_, d)| d))
}

/// See `super::probe`.
pub fn probe(size: u64, head: &[u8]) -> Probe {
    match probe_inner(size, head) {
        Ok(p) => p,
        Err(e) => Probe::Failed(e),
    }
}

#[derive(Default)]
struct Movie {
    codecs: Vec<String>,
    video: bool,
    fragmented: bool,
    duration: Option<f64>,
}

fn probe_inner(size: u64, head: &[u8]) -> Result<Probe, MediaError> {
    let have = head.len() as u64;
    let mut movie: Option<(Movie, u64)> = None;
    let mut points: Option<(Vec<SeekPoint>, f64)> = None;
    let mut at = 0u64;
    let media_start = loop {
        if at >= size {
            return Err(bad("no fragment"));
        }
        let rest = usize::try_from(at)
            .ok()
            .and_then(|a| head.get(a..))
            .unwrap_or_default();
        let Some((kind, hdr, len)) = box_header(rest)? else {
            return Ok(need_head(size, at.saturating_add(16)));
        };
        let end = len.map_or(size, |l| at.saturating_add(l));
        match &kind {
            b"moof" => break at,
            b"mdat" => return Err(MediaError::NotFragmented),
            b"moov" | b"sidx" => {
                if end > have {
                    return Ok(need_head(size, end.saturating_add(16)));
                }
                // Within the head, so within usize.
                let data = rest.get(hdr..(end - at) as usize).unwrap_or_default();
                if &kind == b"moov" {
                    movie = Some((read_moov(data)?, end));
                } else if points.is_none() {
                    points = sidx(data, end)?;
                }
            }
            _ => {}
        }
        at = end;
    };
    let (movie, init_end) = movie.ok_or_else(|| bad("no moov before the fragments"))?;
    if !movie.fragmented {
        return Err(MediaError::NotFragmented);
    }
    if movie.codecs.is_empty() {
        return Err(bad("no track this player knows"));
    }
    let (mut points, indexed) = points.unwrap_or_default();
    points.retain(|p| p.offset >= media_start && p.offset < size);
    let kind = if movie.video { "video" } else { "audio" };
    Ok(Probe::Ready(MediaIndex {
        container: Container::Mp4,
        mse_type: format!("{kind}/mp4; codecs=\"{}\"", movie.codecs.join(",")),
        init_end,
        media_start,
        points,
        deferred_index: None,
        // An empty moov (ffmpeg's fragmented output) has no duration:
        // the sidx's is the file's.
        duration: movie
            .duration
            .or(Some(indexed))
            .filter(|d| d.is_finite() && *d > 0.0),
    }))
}

fn read_moov(data: &[u8]) -> Result<Movie, MediaError> {
    let mut movie = Movie::default();
    for (kind, b) in boxes(data)? {
        match &kind {
            b"mvex" => movie.fragmented = true,
            b"mvhd" => movie.duration = mvhd_duration(b),
            b"trak" => {
                let Some(mdia) = child(b, b"mdia")? else {
                    continue;
                };
                let handler = child(mdia, b"hdlr")?.and_then(|h| h.get(8..12));
                let (video, audio) = (handler == Some(b"vide"), handler == Some(b"soun"));
                if !video && !audio {
                    continue;
                }
                let stsd = child(mdia, b"minf")?
                    .map(|m| child(m, b"stbl"))
                    .transpose()?
                    .flatten()
                    .map(|s| child(s, b"stsd"))
                    .transpose()?
                    .flatten()
                    .ok_or_else(|| bad("a track without sample descriptions"))?;
                let entries = boxes(stsd.get(8..).unwrap_or_default())?;
                let (format, entry) = entries.first().ok_or_else(|| bad("an empty stsd"))?;
                movie.codecs.push(codec(format, entry)?);
                movie.video |= video;
                if movie.codecs.len() > 8 {
                    return Err(bad("too many tracks"));
                }
            }
            _ => {}
        }
    }
    Ok(movie)
}

fn mvhd_duration(b: &[u8]) -> Option<f64> {
    let (scale, duration) = match b.first()? {
        0 => (be_uint(b.get(12..16)?), be_uint(b.get(16..20)?)),
        1 => (be_uint(b.get(20..24)?), be_uint(b.get(24..32)?)),
        _ => return None,
    };
    // With an empty moov (fragments to come) the duration is 0.
    (scale > 0 && duration > 0).then(|| duration as f64 / scale as f64)
}

/// The RFC 6381 codec string of a sample entry.
fn codec(format: &[u8; 4], entry: &[u8]) -> Result<String, MediaError> {
    // SampleEntry (8 bytes) + VisualSampleEntry (70) / AudioSampleEntry (20).
    const VISUAL: usize = 78;
    const AUDIO: usize = 28;
    match format {
        b"avc1" | b"avc3" => {
            let c = child(entry.get(VISUAL..).unwrap_or_default(), b"avcC")?
                .and_then(|c| c.get(1..4))
                .and_then(|c| <[u8; 3]>::try_from(c).ok());
            let [profile, compat, level] = c.ok_or_else(|| bad("an avc1 entry without avcC"))?;
            let tag = String::from_utf8_lossy(format);
            Ok(format!("{tag}.{profile:02x}{compat:02x}{level:02x}"))
        }
        b"vp09" => {
            // vpcC: version and flags (4), profile, level, bit depth (4 bits).
            let c = child(entry.get(VISUAL..).unwrap_or_default(), b"vpcC")?
                .and_then(|c| c.get(4..7))
                .and_then(|c| <[u8; 3]>::try_from(c).ok());
            let [profile, level, depth] = c.ok_or_else(|| bad("a vp09 entry without vpcC"))?;
            Ok(format!("vp09.{profile:02}.{level:02}.{:02}", depth >> 4))
        }
        b"mp4a" => {
            let esds = child(entry.get(AUDIO..).unwrap_or_default(), b"esds")?;
            Ok(esds.and_then(aac_type).map_or_else(
                || "mp4a.40.2".to_string(),
                |(object, aot)| format!("mp4a.{object:x}.{aot}"),
            ))
        }
        b"Opus" => Ok("opus".into()),
        b"fLaC" => Ok("flac".into()),
        other => Err(MediaError::Codec(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// From an `esds` (ISO/IEC 14496-1 descriptors): the object type and,
/// for AAC, the audio object type.
fn aac_type(esds: &[u8]) -> Option<(u8, u8)> {
    let mut b = esds.get(4..)?; // version and flags
    let mut object = None;
    // Descriptors: tag, length (7 bits a byte, high bit "more"), body.
    for _ in 0..8 {
        let (&tag, rest) = b.split_first()?;
        let mut len = 0usize;
        let mut i = 0;
        loop {
            let x = *rest.get(i)?;
            len = (len << 7) | usize::from(x & 0x7F);
            i += 1;
            if x & 0x80 == 0 || i == 4 {
                break;
            }
        }
        let body = rest.get(i..i + len)?;
        match tag {
            // ES_Descriptor: ES_ID (2), flags (1), then its descriptors
            // (the optional fields are not used by ffmpeg's output).
            3 => b = body.get(3..)?,
            // DecoderConfigDescriptor: objectTypeIndication, then 12 bytes.
            4 => {
                object = body.first().copied();
                b = body.get(13..)?;
            }
            // DecoderSpecificInfo: the audio object type, 5 bits.
            5 => return Some((object?, body.first()? >> 3)),
            _ => return object.map(|o| (o, 2)),
        }
    }
    None
}

/// A `sidx` ending at `end`: its fragments' times and offsets, and the
/// time it ends at. Indexes of indexes (reference type 1) are not
/// followed: the file then seeks within what is buffered.
fn sidx(b: &[u8], end: u64) -> Result<Option<(Vec<SeekPoint>, f64)>, MediaError> {
    let version = *b.first().ok_or_else(|| bad("an empty sidx"))?;
    let scale = be_uint(b.get(8..12).ok_or_else(|| bad("a short sidx"))?);
    let (mut time, first, rest) = if version == 0 {
        (
            be_uint(b.get(12..16).unwrap_or_default()),
            be_uint(b.get(16..20).unwrap_or_default()),
            b.get(20..),
        )
    } else {
        (
            be_uint(b.get(12..20).unwrap_or_default()),
            be_uint(b.get(20..28).unwrap_or_default()),
            b.get(28..),
        )
    };
    let rest = rest.ok_or_else(|| bad("a short sidx"))?;
    if scale == 0 {
        return Err(bad("a sidx with a zero timescale"));
    }
    let count = be_uint(rest.get(2..4).unwrap_or_default()) as usize;
    let mut offset = end.saturating_add(first);
    let mut points = Vec::new();
    for r in rest
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(12)
        .take(count.min(MAX_POINTS))
    {
        let (Some(size), Some(duration)) = (r.get(..4), r.get(4..8)) else {
            break;
        };
        let size = be_uint(size);
        if size >> 31 == 1 {
            return Ok(None);
        }
        points.push(SeekPoint {
            time: time as f64 / scale as f64,
            offset,
        });
        offset = offset.saturating_add(size);
        time = time.saturating_add(be_uint(duration));
    }
    Ok(Some((points, time as f64 / scale as f64)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn bx(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        [&(data.len() as u32 + 8).to_be_bytes()[..], kind, data].concat()
    }

    /// A fragmented MP4: H.264 and AAC, `fragments` fragments of
    /// `fragment_len` bytes, 1 s each, with a sidx (or without).
    pub(crate) fn sample(
        fragments: usize,
        fragment_len: usize,
        with_sidx: bool,
        with_mvex: bool,
    ) -> Vec<u8> {
        let trak = |handler: &[u8; 4], entry: Vec<u8>| {
            let stsd = bx(b"stsd", &[&[0, 0, 0, 0, 0, 0, 0, 1][..], &entry].concat());
            let minf = bx(b"minf", &bx(b"stbl", &stsd));
            let hdlr = bx(b"hdlr", &[&[0u8; 8][..], handler, &[0u8; 13]].concat());
            bx(b"trak", &bx(b"mdia", &[hdlr, minf].concat()))
        };
        let avc1 = bx(
            b"avc1",
            &[vec![0u8; 78], bx(b"avcC", &[1, 0x64, 0x00, 0x1f, 0xff])].concat(),
        );
        // esds: ES_Descriptor(3) > DecoderConfig(4, object 0x40) > DecoderSpecificInfo(5, AOT 2).
        let dsi = [5u8, 2, 0x12, 0x10];
        let dcd = [&[4u8, 13 + dsi.len() as u8, 0x40][..], &[0u8; 12], &dsi].concat();
        let es = [&[3u8, 3 + dcd.len() as u8, 0, 1, 0][..], &dcd].concat();
        let mp4a = bx(
            b"mp4a",
            &[vec![0u8; 28], bx(b"esds", &[&[0u8; 4][..], &es].concat())].concat(),
        );
        let mut moov_body = [trak(b"vide", avc1), trak(b"soun", mp4a)].concat();
        if with_mvex {
            moov_body.extend(bx(b"mvex", &[]));
        }
        let head = [bx(b"ftyp", b"isom\0\0\0\0"), bx(b"moov", &moov_body)].concat();
        let fragment = |i: usize| {
            let moof = bx(b"moof", &[i as u8; 8]);
            [
                moof.clone(),
                bx(b"mdat", &vec![i as u8; fragment_len - moof.len() - 8]),
            ]
            .concat()
        };
        let mut out = head;
        if with_sidx {
            let mut body = vec![1u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x03, 0xe8];
            body.extend(0u64.to_be_bytes());
            body.extend(0u64.to_be_bytes());
            body.extend([0, 0]);
            body.extend((fragments as u16).to_be_bytes());
            for _ in 0..fragments {
                body.extend((fragment_len as u32).to_be_bytes());
                body.extend(1000u32.to_be_bytes());
                body.extend(0x9000_0000u32.to_be_bytes());
            }
            out.extend(bx(b"sidx", &body));
        }
        for i in 0..fragments {
            out.extend(fragment(i));
        }
        out
    }

    #[test]
    fn a_fragmented_mp4_with_a_sidx_seeks_by_fragment() {
        let file = sample(6, 3000, true, true);
        let (Probe::Ready(index), _) = super::super::webm::tests::probe_all(&file, "video/mp4")
        else {
            panic!("not ready")
        };
        assert_eq!(
            index.mse_type,
            "video/mp4; codecs=\"avc1.64001f,mp4a.40.2\""
        );
        assert_eq!(index.points.len(), 6);
        assert_eq!(index.duration, Some(6.0));
        assert_eq!(index.points[0].offset, index.media_start);
        for (i, p) in index.points.iter().enumerate() {
            assert_eq!(p.time, i as f64);
            assert_eq!(&file[p.offset as usize + 4..][..4], b"moof");
        }
        assert!(file[..index.init_end as usize]
            .windows(4)
            .any(|w| w == b"moov"));
        assert!(!file[..index.init_end as usize]
            .windows(4)
            .any(|w| w == b"sidx"));
    }

    #[test]
    fn without_a_sidx_it_plays_from_the_start_and_a_plain_mp4_is_named() {
        let file = sample(3, 2000, false, true);
        let (Probe::Ready(index), _) = super::super::webm::tests::probe_all(&file, "video/mp4")
        else {
            panic!("not ready")
        };
        assert!(index.points.is_empty());
        assert_eq!(&file[index.media_start as usize + 4..][..4], b"moof");
        let plain = sample(3, 2000, false, false);
        let (r, _) = super::super::webm::tests::probe_all(&plain, "video/mp4");
        assert_eq!(r, Probe::Failed(MediaError::NotFragmented));
        let mdat_first = [bx(b"ftyp", b"isom\0\0\0\0"), bx(b"mdat", &[0; 100])].concat();
        let (r, _) = super::super::webm::tests::probe_all(&mdat_first, "video/mp4");
        assert_eq!(r, Probe::Failed(MediaError::NotFragmented));
    }

    #[test]
    fn a_box_claiming_the_whole_address_space_is_refused() {
        let huge = [&1u32.to_be_bytes()[..], b"moov", &u64::MAX.to_be_bytes()].concat();
        assert_eq!(
            probe(1 << 40, &huge),
            Probe::Failed(MediaError::TooLarge(super::super::MAX_HEAD))
        );
    }

    #[test]
    fn truncated_input_fails_cleanly() {
        let file = sample(3, 500, true, true);
        for cut in 0..file.len() {
            let _ = probe(file.len() as u64, &file[..cut]);
            let _ = probe(cut as u64, &file[..cut]);
        }
    }
}
