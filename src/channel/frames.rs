//! Frames of cells: a frame holds whole cells back to back. The first cell
//! of a link is VERSIONS with a 2-byte circuit id; everything after it uses
//! the width the negotiated version fixes, possibly within the same frame.

use crate::cell::{CellError, CircIdLen, RawCell};

use super::{ChannelError, MAX_FRAME_LEN};

/// Decodes every cell in `frame`. `width_after` is called after each cell
/// and gives the circuit id width for the next one (so a handshake can
/// switch widths after VERSIONS). An incomplete trailing cell is an error.
pub fn decode_frame(
    frame: &[u8],
    mut width: CircIdLen,
    mut width_after: impl FnMut(&RawCell) -> CircIdLen,
) -> Result<Vec<RawCell>, ChannelError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(ChannelError::FrameTooLarge(frame.len()));
    }
    if frame.is_empty() {
        return Err(CellError::Truncated {
            needed: 1,
            available: 0,
        }
        .into());
    }
    let mut input = frame;
    let mut cells = Vec::new();
    while !input.is_empty() {
        let cell = RawCell::decode(&mut input, width)?;
        width = width_after(&cell);
        cells.push(cell);
    }
    Ok(cells)
}

/// Encodes cells into one frame, all with the same circuit id width.
pub fn encode_cells(cells: &[RawCell], width: CircIdLen) -> Result<Vec<u8>, CellError> {
    let mut out = Vec::with_capacity(cells.len() * crate::cell::CELL_LEN_V4);
    for c in cells {
        c.encode_into(width, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{command, Versions};

    #[test]
    fn width_switches_after_versions_within_one_frame() {
        let mut frame = Versions::new(&[4])
            .to_cell()
            .to_bytes(CircIdLen::Two)
            .unwrap();
        frame.extend(
            RawCell::new(7, command::PADDING, vec![])
                .to_bytes(CircIdLen::Four)
                .unwrap(),
        );
        let cells = decode_frame(&frame, CircIdLen::Two, |_| CircIdLen::Four).unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[1].circ_id, 7);
    }

    #[test]
    fn partial_trailing_cell_and_empty_frame_are_errors() {
        let mut frame = RawCell::new(1, command::PADDING, vec![])
            .to_bytes(CircIdLen::Four)
            .unwrap();
        frame.extend_from_slice(&[0, 0, 0]);
        assert!(decode_frame(&frame, CircIdLen::Four, |_| CircIdLen::Four).is_err());
        assert!(decode_frame(&[], CircIdLen::Four, |_| CircIdLen::Four).is_err());
        let huge = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(
            decode_frame(&huge, CircIdLen::Four, |_| CircIdLen::Four),
            Err(ChannelError::FrameTooLarge(MAX_FRAME_LEN + 1))
        );
    }
}
