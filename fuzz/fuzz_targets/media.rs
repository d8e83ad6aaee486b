//! Fuzz target: the media probe (WebM headers and Cues, MP4 boxes and
//! sidx) on arbitrary bytes, as a head and as an extra region, and the
//! player's decisions on what it returns; and the live cutter fed the
//! bytes in slices: what it cuts is exactly what it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peersm_core::media::live::{Cut, LiveCutter};
use peersm_core::media::{probe, Playback, Probe, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let mime = if which & 1 == 0 { "video/webm" } else { "video/mp4" };
    let size = body.len() as u64 + u64::from(which >> 1) * 1000;
    let split = (usize::from(which) * 7).min(body.len());
    let (head, rest) = body.split_at(split.max(body.len() / 2));
    let mut result = probe(mime, size, head, None);
    if let Probe::Need { from, .. } = result {
        result = probe(mime, size, head, Some((from, rest)));
    }
    if let Probe::Ready(index) = result {
        assert!(index.init_end <= size && index.media_start <= size);
        assert!(index.points.windows(2).all(|w| w[0].time <= w[1].time));
        // The player over it never appends outside the file.
        let mut p = Playback::new(index, size, 490, 0..(size / 490 + 1) as u32);
        for i in 0..64 {
            match p.next(0.0) {
                Step::Append { from, to, .. } => {
                    assert!(from < to && to <= size);
                    p.appended();
                }
                _ => break,
            }
            if i == 10 {
                p.seek(f64::from(which));
            }
        }
    }
    // The live cutter, in slices of `which` bytes: the bytes it cuts are
    // the bytes it took, in order, until it says the stream is bad.
    let mut cutter = LiveCutter::default();
    let mut out = Vec::new();
    let mut failed = false;
    for slice in body.chunks(usize::from(which).max(1)) {
        match cutter.push(slice) {
            Ok(cuts) => out.extend(cuts),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if !failed {
        out.extend(cutter.finish());
        let bytes: Vec<u8> = out
            .iter()
            .flat_map(|c| match c {
                Cut::Init { data, .. } | Cut::Piece { data, .. } => data.iter().copied(),
            })
            .collect();
        assert!(body.starts_with(&bytes));
        if out.iter().any(|c| matches!(c, Cut::Init { .. })) {
            assert_eq!(bytes, body);
        }
    }
});
