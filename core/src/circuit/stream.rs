//! Streams at one end of a circuit (the client, or the hop where a stream
//! ends: an exit, a directory, a tab's service), with one bounded,
//! pull-based queue each way (tor-spec §6, §7.4):
//!
//! - outgoing: the local writer offers bytes and the queue takes what fits
//!   (`write` returns how many); they leave as DATA cells while the stream
//!   and circuit package windows allow. A writer told "0" waits for
//!   `Writable`, so nothing between a socket and a circuit grows without
//!   bound, and an exit whose window is closed stops reading its socket.
//! - incoming: DATA waits until the local reader takes it (`read`); a
//!   stream SENDME is sent only for cells the reader has taken, so a slow
//!   reader closes the sender's window instead of filling our memory. The
//!   queue can never hold more than the stream window (500 cells).
//!
//! `Streams` is the set of a circuit's streams; `ClientCircuit` and
//! `RelayCircuit` both keep one and ask it for the next DATA cell to send.

use std::collections::{BTreeMap, VecDeque};

use crate::cell::ordb::{DbConnectedReassembler, DbDataHeader, DB_DATA_LEN};
use crate::cell::{relay_command, RelayCell, RELAY_DATA_LEN};

use super::flow::{FlowError, STREAM_WINDOW_INCREMENT, STREAM_WINDOW_START};

/// Bytes a stream holds for sending before `write` takes no more.
pub const STREAM_SEND_CAPACITY: usize = 64 * 1024;
/// Streams one circuit may carry at once (a client asking for more is
/// refused with END RESOURCELIMIT at the far end, or an error here).
pub const MAX_STREAMS_PER_CIRCUIT: usize = 256;

/// Bytes in order: appended at the back, taken from the front in bulk.
#[derive(Debug, Default)]
struct ByteQueue {
    buf: Vec<u8>,
    /// Bytes before this were taken.
    head: usize,
}

impl ByteQueue {
    fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, data: &[u8]) {
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            // Reuse the taken front instead of growing.
            self.buf.drain(..self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.len());
        let out = self
            .buf
            .get(self.head..self.head + n)
            .unwrap_or_default()
            .to_vec();
        self.head += n;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        }
        out
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
    }
}

/// One stream's two queues and its windows.
#[derive(Debug)]
pub struct StreamQueue {
    outgoing: ByteQueue,
    package_window: u16,
    /// A write was cut short: tell the writer when there is room again.
    writer_waiting: bool,
    incoming: ByteQueue,
    /// Bytes left unread of each received cell, oldest first.
    unread_cells: VecDeque<usize>,
    deliver_window: u16,
    /// Cells the reader took since the last SENDME we sent.
    taken_cells: u16,
    /// The reader was told data is waiting and has not emptied the queue.
    readable_reported: bool,
    /// END to send once every outgoing byte has left.
    end_after_data: Option<u8>,
}

impl Default for StreamQueue {
    fn default() -> Self {
        StreamQueue {
            outgoing: ByteQueue::default(),
            package_window: STREAM_WINDOW_START,
            writer_waiting: false,
            incoming: ByteQueue::default(),
            unread_cells: VecDeque::new(),
            deliver_window: STREAM_WINDOW_START,
            taken_cells: 0,
            readable_reported: false,
            end_after_data: None,
        }
    }
}

impl StreamQueue {
    /// Takes what fits of `data`; the rest must be offered again after
    /// `Writable`.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = self.room().min(data.len());
        self.outgoing.push(data.get(..n).unwrap_or_default());
        // A short write, or a full queue: the writer waits for Writable.
        if n < data.len() || self.room() == 0 {
            self.writer_waiting = true;
        }
        n
    }

    /// Bytes `write` would take now.
    pub fn room(&self) -> usize {
        if self.end_after_data.is_some() {
            return 0;
        }
        STREAM_SEND_CAPACITY.saturating_sub(self.outgoing.len())
    }

    pub fn queued_out(&self) -> usize {
        self.outgoing.len()
    }

    pub fn queued_in(&self) -> usize {
        self.incoming.len()
    }

    fn can_package(&self) -> bool {
        !self.outgoing.is_empty() && self.package_window > 0
    }

    /// The next data payload (at most `max` bytes), if the stream window
    /// allows.
    fn take_payload(&mut self, max: usize) -> Option<Vec<u8>> {
        if !self.can_package() {
            return None;
        }
        self.package_window -= 1;
        Some(self.outgoing.take(max))
    }

    fn on_sendme(&mut self) -> Result<(), FlowError> {
        if self.package_window + STREAM_WINDOW_INCREMENT > STREAM_WINDOW_START {
            return Err(FlowError::WindowOverflow);
        }
        self.package_window += STREAM_WINDOW_INCREMENT;
        Ok(())
    }

    /// A DATA cell arrived. Returns whether the reader should be told
    /// (the queue was empty).
    fn on_data(&mut self, data: &[u8]) -> Result<bool, FlowError> {
        self.deliver_window = self
            .deliver_window
            .checked_sub(1)
            .ok_or(FlowError::DeliverWindowExceeded)?;
        if data.is_empty() && self.unread_cells.is_empty() {
            // Nothing to read: taken as soon as it came.
            self.taken_cells += 1;
            return Ok(false);
        }
        self.incoming.push(data);
        self.unread_cells.push_back(data.len());
        let tell = !self.readable_reported;
        self.readable_reported = true;
        Ok(tell)
    }

    /// Takes up to `max` received bytes. Returns them and how many stream
    /// SENDMEs are now due (one per 50 cells taken).
    fn read(&mut self, max: usize) -> (Vec<u8>, u16) {
        let data = self.incoming.take(max);
        let mut left = data.len();
        while let Some(head) = self.unread_cells.front_mut() {
            if *head > left {
                *head -= left;
                break;
            }
            left -= *head;
            self.unread_cells.pop_front();
            self.taken_cells += 1;
        }
        if self.incoming.is_empty() {
            self.readable_reported = false;
        }
        let mut sendmes = 0;
        while self.taken_cells >= STREAM_WINDOW_INCREMENT {
            self.taken_cells -= STREAM_WINDOW_INCREMENT;
            self.deliver_window += STREAM_WINDOW_INCREMENT;
            sendmes += 1;
        }
        (data, sendmes)
    }
}

/// What a circuit does for its streams: `ClientCircuit` and `RelayCircuit`
/// each carry their streams' cells (their own way: per hop, or at one
/// hop), and the stream logic above is written once against this.
pub(crate) trait StreamCarrier {
    /// Whether the circuit window toward `hop` takes a DATA cell.
    fn window_open(&self, hop: usize) -> bool;
    /// Sends a relay cell toward `hop`; returns its running digest.
    fn send_cell(&mut self, hop: usize, cell: RelayCell) -> Result<[u8; 20], super::CircuitError>;
    /// A DATA cell with `digest` left toward `hop`.
    fn data_sent(&mut self, hop: usize, digest: [u8; 20]);
    /// Something for the application.
    fn notice(&mut self, notice: StreamNotice);
    /// The circuit's streams.
    fn streams(&mut self) -> &mut Streams;

    /// Runs `f` on the streams with the circuit as their carrier.
    fn with_streams<T>(
        &mut self,
        f: impl FnOnce(&mut Streams, &mut Self) -> Result<T, super::CircuitError>,
    ) -> Result<T, super::CircuitError>
    where
        Self: Sized,
    {
        let mut streams = std::mem::take(self.streams());
        let result = f(&mut streams, self);
        *self.streams() = streams;
        result
    }

    /// Sends what the windows allow of the streams' queued data.
    fn flush_streams(&mut self) -> Result<(), super::CircuitError>
    where
        Self: Sized,
    {
        self.with_streams(|streams, me| streams.flush(me))
    }
}

/// What a circuit's streams tell the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamNotice {
    /// Received data waits for `read` (said once until the queue empties).
    Readable { stream_id: u16 },
    /// `write` takes bytes again after a short write.
    Writable { stream_id: u16 },
    /// The other end's END, once the reader took every byte before it.
    Ended { stream_id: u16, reason: u8 },
}

/// What makes a stream an ORDB stream (docs/PROTOCOL.md "ORDB"): its
/// cells are DB_DATA, DB_END and DB_SENDME, and each DB_DATA carries
/// `POSITION | CHECK` (`DbDataHeader`). POSITION must follow on from the
/// bytes before it and CHECK must not change within a stream; anything
/// else is a protocol error.
#[derive(Debug, Default)]
pub(crate) struct DbFraming {
    /// POSITION of the next DB_DATA we send, and the CHECK it carries.
    pub(crate) send_position: u32,
    pub(crate) send_check: [u8; 4],
    /// POSITION the next DB_DATA must carry, and the CHECK it must carry
    /// (the client sets it from its query; `None`: the first one's).
    pub(crate) recv_position: u32,
    pub(crate) recv_check: Option<[u8; 4]>,
    /// DB_CONNECTED fragments (client side).
    pub(crate) connected: DbConnectedReassembler,
}

#[derive(Debug)]
pub(crate) struct Stream {
    /// The hop the stream ends at (always 0 at a relay).
    pub(crate) hop: usize,
    /// CONNECTED came (client) or was sent (relay): DATA may flow.
    pub(crate) open: bool,
    pub(crate) queue: StreamQueue,
    /// The other end sent END (reason) while data still waited for `read`.
    pub(crate) remote_end: Option<u8>,
    /// Set for an ORDB stream.
    pub(crate) db: Option<Box<DbFraming>>,
}

impl Stream {
    pub(crate) fn end_command(&self) -> u8 {
        if self.db.is_some() {
            relay_command::DB_END
        } else {
            relay_command::END
        }
    }

    fn sendme_command(&self) -> u8 {
        if self.db.is_some() {
            relay_command::DB_SENDME
        } else {
            relay_command::SENDME
        }
    }
}

/// A circuit's streams.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    map: BTreeMap<u16, Stream>,
    /// Round-robin position: the stream served last.
    cursor: u16,
    next_id: u16,
    notices: VecDeque<StreamNotice>,
    /// Streams we ended before the other side did, newest last: its
    /// answer may be on the way still (a cancelled ORDB query), and is
    /// dropped rather than taken as a protocol violation, as C tor does
    /// with half-closed streams. At most `MAX_STREAMS_PER_CIRCUIT` kept.
    half_closed: VecDeque<u16>,
}

/// The result of a read: the bytes and the SENDMEs to send.
pub(crate) struct Read {
    pub(crate) data: Vec<u8>,
    pub(crate) hop: usize,
    pub(crate) sendmes: u16,
}

impl Streams {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn contains(&self, id: u16) -> bool {
        self.map.contains_key(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u16) -> Option<&mut Stream> {
        self.map.get_mut(&id)
    }

    pub(crate) fn insert(&mut self, id: u16, hop: usize, open: bool) -> bool {
        if self.map.len() >= MAX_STREAMS_PER_CIRCUIT || id == 0 || self.map.contains_key(&id) {
            return false;
        }
        self.map.insert(
            id,
            Stream {
                hop,
                open,
                queue: StreamQueue::default(),
                remote_end: None,
                db: None,
            },
        );
        true
    }

    /// Like `insert`, for an ORDB stream.
    pub(crate) fn insert_db(
        &mut self,
        id: u16,
        hop: usize,
        open: bool,
        framing: DbFraming,
    ) -> bool {
        if !self.insert(id, hop, open) {
            return false;
        }
        if let Some(s) = self.map.get_mut(&id) {
            s.db = Some(Box::new(framing));
        }
        true
    }

    /// A DB_DATA cell for stream `id` arrived at `hop`: its header must
    /// follow on from what came before, then its data is taken as DATA's.
    pub(crate) fn on_db_data(
        &mut self,
        id: u16,
        hop: usize,
        body: &[u8],
    ) -> Result<(), StreamError> {
        let (header, data) = DbDataHeader::decode(body).map_err(|_| StreamError::Framing)?;
        if let Some(s) = self.map.get_mut(&id) {
            if s.remote_end.is_none() {
                let framing = s.db.as_mut().ok_or(StreamError::Framing)?;
                if header.position != framing.recv_position
                    || framing.recv_check.is_some_and(|c| c != header.check)
                {
                    return Err(StreamError::Framing);
                }
                framing.recv_check = Some(header.check);
                framing.recv_position = framing
                    .recv_position
                    .checked_add(data.len() as u32)
                    .ok_or(StreamError::Framing)?;
            }
        }
        self.deliver(id, hop, data)
    }

    pub(crate) fn remove(&mut self, id: u16) -> Option<Stream> {
        self.map.remove(&id)
    }

    /// We sent END on stream `id` before the other side ended it.
    pub(crate) fn closed_by_us(&mut self, id: u16) {
        if self.half_closed.len() >= MAX_STREAMS_PER_CIRCUIT {
            self.half_closed.pop_front();
        }
        self.half_closed.push_back(id);
    }

    /// Whether stream `id` is one we ended whose other side has not (its
    /// late cells are dropped).
    pub(crate) fn is_half_closed(&self, id: u16) -> bool {
        self.half_closed.contains(&id)
    }

    /// The other side's END for a stream we had ended: nothing more comes.
    pub(crate) fn end_of_half_closed(&mut self, id: u16) {
        self.half_closed.retain(|h| *h != id);
    }

    /// Every stream, removed (the circuit died).
    pub(crate) fn drain(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.map).into_keys().collect()
    }

    /// Streams ending beyond `hop`, removed (the circuit was truncated).
    pub(crate) fn remove_beyond(&mut self, hop: usize) -> Vec<u16> {
        let gone: Vec<u16> = self
            .map
            .iter()
            .filter(|(_, s)| s.hop > hop)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.map.remove(id);
        }
        gone
    }

    /// A stream id not in use (client side).
    pub(crate) fn free_id(&mut self) -> Option<u16> {
        if self.map.len() >= MAX_STREAMS_PER_CIRCUIT {
            return None;
        }
        for _ in 0..=u16::MAX {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if id != 0 && !self.map.contains_key(&id) && !self.half_closed.contains(&id) {
                return Some(id);
            }
        }
        None
    }

    pub(crate) fn write(&mut self, id: u16, data: &[u8]) -> Option<usize> {
        Some(self.map.get_mut(&id)?.queue.write(data))
    }

    pub(crate) fn room(&self, id: u16) -> usize {
        self.map.get(&id).map_or(0, |s| s.queue.room())
    }

    pub(crate) fn read(&mut self, id: u16, max: usize) -> Option<Read> {
        let s = self.map.get_mut(&id)?;
        let (data, sendmes) = s.queue.read(max);
        let hop = s.hop;
        let drained_end = s.remote_end.filter(|_| s.queue.queued_in() == 0);
        if let Some(reason) = drained_end {
            // Everything before the END is read: now the stream is over,
            // and nothing is owed for it (no SENDME to a closed stream).
            self.map.remove(&id);
            self.notices.push_back(StreamNotice::Ended {
                stream_id: id,
                reason,
            });
            return Some(Read {
                data,
                hop,
                sendmes: 0,
            });
        }
        Some(Read { data, hop, sendmes })
    }

    /// END from the other side. Returns `Some(reason)` when the stream is
    /// over now (removed); with unread data it ends once that is read
    /// (`StreamNotice::Ended`), and nothing more is sent on it meanwhile.
    pub(crate) fn on_end(&mut self, id: u16, reason: u8) -> Option<u8> {
        let s = self.map.get_mut(&id)?;
        if s.remote_end.is_some() {
            return None;
        }
        if s.queue.queued_in() == 0 {
            self.map.remove(&id);
            return Some(reason);
        }
        s.remote_end = Some(reason);
        s.queue.outgoing.clear();
        s.queue.end_after_data = None;
        s.open = false;
        None
    }

    /// Whether an open stream still has bytes to send.
    pub(crate) fn has_unsent(&self, id: u16) -> bool {
        self.map
            .get(&id)
            .is_some_and(|s| s.open && s.queue.queued_out() > 0)
    }

    /// Whether the other side already ended this stream.
    pub(crate) fn remote_ended(&self, id: u16) -> bool {
        self.map.get(&id).is_some_and(|s| s.remote_end.is_some())
    }

    /// DATA for stream `id` arrived at `hop`. Unknown streams are not an
    /// error (we may have closed it): the caller drops the data.
    pub(crate) fn on_data(&mut self, id: u16, hop: usize, data: &[u8]) -> Result<(), StreamError> {
        if self.map.get(&id).is_some_and(|s| s.db.is_some()) {
            return Err(StreamError::Framing);
        }
        self.deliver(id, hop, data)
    }

    fn deliver(&mut self, id: u16, hop: usize, data: &[u8]) -> Result<(), StreamError> {
        let Some(s) = self.map.get_mut(&id) else {
            return Ok(());
        };
        if s.remote_end.is_some() {
            return Ok(()); // After its END: dropped.
        }
        if !s.open || s.hop != hop {
            return Err(StreamError::NotOpen);
        }
        if s.queue.on_data(data).map_err(StreamError::Flow)? {
            self.notices
                .push_back(StreamNotice::Readable { stream_id: id });
        }
        Ok(())
    }

    pub(crate) fn on_sendme(&mut self, id: u16) -> Result<(), StreamError> {
        match self.map.get_mut(&id) {
            Some(s) => s.queue.on_sendme().map_err(StreamError::Flow),
            None => Ok(()),
        }
    }

    /// Marks the stream to end with `reason` once its outgoing bytes left.
    pub(crate) fn end_after_data(&mut self, id: u16, reason: u8) -> bool {
        match self.map.get_mut(&id) {
            Some(s) => {
                s.queue.end_after_data = Some(reason);
                true
            }
            None => false,
        }
    }

    /// The next cell the streams want to send, round-robin over streams:
    /// a DATA payload (when `window_open(hop)` says the circuit window at
    /// that hop allows it), or an END whose stream has sent everything
    /// (the stream is then removed). `None` when nothing can go now.
    pub(crate) fn next_cell(
        &mut self,
        mut window_open: impl FnMut(usize) -> bool,
    ) -> Option<(usize, RelayCell)> {
        let ids: Vec<u16> = self
            .map
            .range(self.cursor.saturating_add(1)..)
            .chain(self.map.range(..=self.cursor))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(s) = self.map.get_mut(&id) else {
                continue;
            };
            if !s.open {
                continue;
            }
            let hop = s.hop;
            if s.queue.can_package() && window_open(hop) {
                let cell = match s.db.as_mut() {
                    None => RelayCell::new(
                        relay_command::DATA,
                        id,
                        s.queue.take_payload(RELAY_DATA_LEN)?,
                    ),
                    Some(framing) => {
                        let payload = s.queue.take_payload(DB_DATA_LEN)?;
                        let header = DbDataHeader {
                            position: framing.send_position,
                            check: framing.send_check,
                        };
                        framing.send_position =
                            framing.send_position.wrapping_add(payload.len() as u32);
                        RelayCell::new(relay_command::DB_DATA, id, header.encode(&payload))
                    }
                };
                self.cursor = id;
                self.after_send(id);
                return Some((hop, cell));
            }
            if let (true, Some(reason)) = (s.queue.outgoing.is_empty(), s.queue.end_after_data) {
                let end = s.end_command();
                let remote_ended = s.remote_end.is_some();
                self.map.remove(&id);
                if !remote_ended {
                    self.closed_by_us(id);
                }
                return Some((hop, RelayCell::new(end, id, vec![reason])));
            }
        }
        None
    }

    fn after_send(&mut self, id: u16) {
        if let Some(s) = self.map.get_mut(&id) {
            if s.queue.writer_waiting && s.queue.room() >= STREAM_SEND_CAPACITY / 2 {
                s.queue.writer_waiting = false;
                self.notices
                    .push_back(StreamNotice::Writable { stream_id: id });
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn poll_notice(&mut self) -> Option<StreamNotice> {
        self.notices.pop_front()
    }

    /// Sends what the windows allow of every stream's queued data
    /// (round-robin) and the ENDs due; passes the notices on.
    pub(crate) fn flush(
        &mut self,
        carrier: &mut impl StreamCarrier,
    ) -> Result<(), super::CircuitError> {
        while let Some((hop, cell)) = self.next_cell(|h| carrier.window_open(h)) {
            let is_data =
                cell.command == relay_command::DATA || cell.command == relay_command::DB_DATA;
            let digest = carrier.send_cell(hop, cell)?;
            if is_data {
                carrier.data_sent(hop, digest);
            }
        }
        while let Some(notice) = self.notices.pop_front() {
            carrier.notice(notice);
        }
        Ok(())
    }

    /// `write` on a stream, then what it lets go out.
    pub(crate) fn write_and_flush(
        &mut self,
        id: u16,
        data: &[u8],
        carrier: &mut impl StreamCarrier,
    ) -> Result<usize, super::CircuitError> {
        let n = self
            .write(id, data)
            .ok_or(super::CircuitError::NoSuchStream(id))?;
        self.flush(carrier)?;
        Ok(n)
    }

    /// `read` on a stream, with the stream SENDMEs the reader earned.
    pub(crate) fn read_and_ack(
        &mut self,
        id: u16,
        max: usize,
        carrier: &mut impl StreamCarrier,
    ) -> Result<Vec<u8>, super::CircuitError> {
        let sendme_command = self
            .map
            .get(&id)
            .map_or(relay_command::SENDME, Stream::sendme_command);
        let read = self
            .read(id, max)
            .ok_or(super::CircuitError::NoSuchStream(id))?;
        for _ in 0..read.sendmes {
            let sendme = RelayCell::new(sendme_command, id, Vec::new());
            carrier.send_cell(read.hop, sendme)?;
        }
        self.flush(carrier)?;
        Ok(read.data)
    }

    /// Bytes queued in every stream, both ways (for bounds checks).
    pub(crate) fn queued(&self) -> usize {
        self.map
            .values()
            .map(|s| s.queue.queued_in() + s.queue.queued_out())
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamError {
    NotOpen,
    /// A DB_DATA header that does not follow on, or DB_DATA on a plain
    /// stream.
    Framing,
    Flow(FlowError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_reader_holds_back_sendmes_and_the_queue_is_bounded() {
        let mut q = StreamQueue::default();
        // The sender may send a whole window; not one cell more.
        for _ in 0..STREAM_WINDOW_START {
            q.on_data(&[7; RELAY_DATA_LEN]).unwrap();
        }
        assert_eq!(
            q.on_data(&[7; 1]),
            Err(FlowError::DeliverWindowExceeded),
            "past the window without a SENDME"
        );
        assert_eq!(q.queued_in(), 500 * RELAY_DATA_LEN);
        // Taking 49 cells and a half is not enough for a SENDME.
        let (d, s) = q.read(49 * RELAY_DATA_LEN + 100);
        assert_eq!((d.len(), s), (49 * RELAY_DATA_LEN + 100, 0));
        let (_, s) = q.read(RELAY_DATA_LEN);
        assert_eq!(s, 1, "the 50th cell taken: one SENDME");
        q.on_data(&[1; 10]).unwrap();
    }

    #[test]
    fn writes_are_cut_at_capacity_and_windows_gate_payloads() {
        let mut q = StreamQueue::default();
        assert_eq!(
            q.write(&vec![0; STREAM_SEND_CAPACITY + 5]),
            STREAM_SEND_CAPACITY
        );
        assert_eq!(q.room(), 0);
        let mut cells = 0;
        while q.take_payload(RELAY_DATA_LEN).is_some() {
            cells += 1;
        }
        assert_eq!(cells, STREAM_SEND_CAPACITY.div_ceil(RELAY_DATA_LEN));
        let mut q = StreamQueue::default();
        q.write(&vec![0; 600 * RELAY_DATA_LEN / 10]);
        q.package_window = 1;
        assert!(q.take_payload(RELAY_DATA_LEN).is_some());
        assert!(q.take_payload(RELAY_DATA_LEN).is_none(), "window closed");
        assert!(q.on_sendme().is_ok());
        assert!(q.take_payload(RELAY_DATA_LEN).is_some());
    }

    #[test]
    fn streams_are_served_round_robin_and_end_after_their_data() {
        let mut s = Streams::default();
        for id in [1, 2] {
            s.insert(id, 0, true);
            s.write(id, &[id as u8; 3 * RELAY_DATA_LEN]);
        }
        s.end_after_data(1, 6);
        let order: Vec<(u8, u16)> = std::iter::from_fn(|| s.next_cell(|_| true))
            .map(|(_, c)| (c.command, c.stream_id))
            .collect();
        let data = relay_command::DATA;
        assert_eq!(
            order,
            [
                (data, 1),
                (data, 2),
                (data, 1),
                (data, 2),
                (data, 1),
                (data, 2),
                (relay_command::END, 1)
            ]
        );
        assert!(!s.contains(1) && s.contains(2));
    }

    #[test]
    fn an_end_waits_for_the_reader_to_take_what_came_before_it() {
        let mut s = Streams::default();
        s.insert(1, 0, true);
        s.on_data(1, 0, b"last words").unwrap();
        assert_eq!(s.on_end(1, 6), None, "data still unread");
        s.on_data(1, 0, b"ignored").unwrap();
        assert!(s.next_cell(|_| true).is_none(), "nothing sent after END");
        let r = s.read(1, 4).unwrap();
        assert_eq!(r.data, b"last");
        assert!(s.contains(1));
        let r = s.read(1, 100).unwrap();
        assert_eq!((r.data.as_slice(), r.sendmes), (&b" words"[..], 0));
        assert!(!s.contains(1));
        let notices: Vec<StreamNotice> = std::iter::from_fn(|| s.poll_notice()).collect();
        assert!(notices.contains(&StreamNotice::Ended {
            stream_id: 1,
            reason: 6
        }));
        // With nothing unread, END ends the stream at once.
        s.insert(2, 0, true);
        assert_eq!(s.on_end(2, 3), Some(3));
    }

    #[test]
    fn ordb_data_must_follow_on_and_keep_its_check() {
        let header = |position, check| DbDataHeader { position, check };
        let mut streams = Streams::default();
        let framing = DbFraming {
            recv_position: 100,
            ..Default::default()
        };
        assert!(streams.insert_db(1, 0, true, framing));
        assert!(streams
            .on_db_data(1, 0, &header(100, [1; 4]).encode(&[5; 490]))
            .is_ok());
        assert!(streams
            .on_db_data(1, 0, &header(590, [1; 4]).encode(&[5; 10]))
            .is_ok());
        // A gap, a repeat, another CHECK, plain DATA, a short header: no.
        for bad in [
            header(700, [1; 4]).encode(&[5; 10]),
            header(590, [1; 4]).encode(&[5; 10]),
            header(600, [2; 4]).encode(&[5; 10]),
        ] {
            assert_eq!(streams.on_db_data(1, 0, &bad), Err(StreamError::Framing));
        }
        assert_eq!(streams.on_data(1, 0, &[5; 10]), Err(StreamError::Framing));
        assert_eq!(streams.on_db_data(1, 0, &[0; 7]), Err(StreamError::Framing));
        // DB_DATA on a plain stream is misframed too.
        assert!(streams.insert(2, 0, true));
        assert_eq!(
            streams.on_db_data(2, 0, &header(0, [0; 4]).encode(&[1])),
            Err(StreamError::Framing)
        );
    }
}
