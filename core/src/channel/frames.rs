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

/// For byte-stream links (TLS): the length of the longest prefix of `buf`
/// made of whole cells, so it can be handed to `handle_frame`. The first
/// cell of a link is VERSIONS with a 2-byte circuit id (`at_start`).
pub fn whole_cells_len(buf: &[u8], at_start: bool) -> usize {
    let mut offset = 0;
    let mut width = if at_start {
        CircIdLen::Two
    } else {
        CircIdLen::Four
    };
    loop {
        let rest = buf.get(offset..).unwrap_or_default();
        let id = width.bytes();
        let Some(&cmd) = rest.get(id) else {
            return offset;
        };
        let len = if crate::cell::command::is_variable_length(cmd) {
            match (rest.get(id + 1), rest.get(id + 2)) {
                (Some(&hi), Some(&lo)) => id + 3 + usize::from(u16::from_be_bytes([hi, lo])),
                _ => return offset,
            }
        } else {
            id + 1 + crate::cell::PAYLOAD_LEN
        };
        if rest.len() < len {
            return offset;
        }
        offset += len;
        width = CircIdLen::Four;
    }
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
    fn whole_cells_len_stops_at_a_partial_cell() {
        let mut stream = Versions::new(&[4, 5])
            .to_cell()
            .to_bytes(CircIdLen::Two)
            .unwrap();
        let first = stream.len();
        stream.extend(
            RawCell::new(1, command::PADDING, vec![])
                .to_bytes(CircIdLen::Four)
                .unwrap(),
        );
        let two = stream.len();
        stream.extend_from_slice(&[0, 0, 0, 1, command::CERTS, 0, 10, 1, 2]);
        assert_eq!(whole_cells_len(&stream[..first - 1], true), 0);
        assert_eq!(whole_cells_len(&stream[..first + 3], true), first);
        assert_eq!(whole_cells_len(&stream, true), two);
        assert_eq!(whole_cells_len(&stream[first..], false), two - first);
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
