//! Frames on a byte stream: `u32 LE payload length`, `u8 tag`, payload, with the length bounded
//! before anything is read, the payload buffer grown only as its bytes arrive, and the bytes
//! counted each way.

use std::io::{Read, Write};

use super::{FRAME_HEADER_LEN, MAX_FRAME_PAYLOAD, Message, bad, tag_name};
use crate::error::{Error, ErrorKind, Result};

/// The messages of a protocol framed as the mirror's is (format-spec/wire.md "Frames"): the
/// mirror protocol's, and `serve restore-fetch`'s.
pub trait FrameMessage: Sized {
    /// The connection, for messages ("mirror connection").
    const CONNECTION: &'static str;
    /// Largest payload.
    const MAX_PAYLOAD: u32;
    /// The tag and payload.
    fn encode(&self) -> (u8, Vec<u8>);
    /// Decode a payload; a protocol error when it is not this tag's message.
    fn decode(tag: u8, payload: &[u8]) -> Result<Self>;
    /// The message's name, for messages.
    fn name(&self) -> &'static str;
    /// A tag's name, for messages.
    fn tag_name(tag: u8) -> &'static str;
    /// A protocol error.
    fn bad(what: std::fmt::Arguments<'_>) -> Error;
}

impl FrameMessage for Message {
    const CONNECTION: &'static str = "mirror connection";
    const MAX_PAYLOAD: u32 = MAX_FRAME_PAYLOAD;
    fn encode(&self) -> (u8, Vec<u8>) {
        Message::encode(self)
    }
    fn decode(tag: u8, payload: &[u8]) -> Result<Self> {
        Message::decode(tag, payload)
    }
    fn name(&self) -> &'static str {
        Message::name(self)
    }
    fn tag_name(tag: u8) -> &'static str {
        tag_name(tag)
    }
    fn bad(what: std::fmt::Arguments<'_>) -> Error {
        bad(what)
    }
}

/// One end of a connection: reads and writes frames of `M`, counting the bytes each way.
pub struct FrameConn<R, W, M> {
    reader: R,
    writer: W,
    /// Bytes written (frame headers included).
    pub sent: u64,
    /// Bytes read (frame headers included).
    pub received: u64,
    messages: std::marker::PhantomData<fn() -> M>,
}

/// A mirror protocol connection.
pub type Conn<R, W> = FrameConn<R, W, Message>;

impl<R: Read, W: Write, M: FrameMessage> FrameConn<R, W, M> {
    /// A connection over a reader and a writer (a pipe pair, a socket, ssh's stdio).
    pub fn new(reader: R, writer: W) -> Self {
        FrameConn {
            reader,
            writer,
            sent: 0,
            received: 0,
            messages: std::marker::PhantomData,
        }
    }

    /// Send one message and flush.
    pub fn send(&mut self, msg: &M) -> Result<()> {
        let (tag, payload) = msg.encode();
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|n| *n <= M::MAX_PAYLOAD)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!(
                        "{}: {} of {} bytes is over the frame limit",
                        M::CONNECTION,
                        msg.name(),
                        payload.len()
                    ),
                )
            })?;
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4] = tag;
        self.writer
            .write_all(&header)
            .and_then(|()| self.writer.write_all(&payload))
            .and_then(|()| self.writer.flush())
            .map_err(|e| Error::io(format_args!("{}: sending {}", M::CONNECTION, msg.name()), e))?;
        self.sent += FRAME_HEADER_LEN + u64::from(len);
        Ok(())
    }

    /// Receive one message. A clean end of stream before a frame is `Io` ("closed").
    pub fn recv(&mut self) -> Result<M> {
        let mut header = [0u8; 5];
        self.reader.read_exact(&mut header).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::new(
                    ErrorKind::Io,
                    format!("{}: the other side closed it", M::CONNECTION),
                )
            } else {
                Error::io(format_args!("{}: reading a frame", M::CONNECTION), e)
            }
        })?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4"));
        if len > M::MAX_PAYLOAD {
            return Err(M::bad(format_args!(
                "a frame of {len} bytes is over the limit of {}",
                M::MAX_PAYLOAD
            )));
        }
        // The buffer grows with the bytes that arrive, not with the length the peer claims:
        // five bytes must not make the other side allocate a whole frame.
        let mut payload = Vec::new();
        let read = (&mut self.reader)
            .take(u64::from(len))
            .read_to_end(&mut payload)
            .map_err(|e| {
                Error::io(
                    format_args!(
                        "{}: reading a {} frame",
                        M::CONNECTION,
                        M::tag_name(header[4])
                    ),
                    e,
                )
            })?;
        if read != len as usize {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{}: the other side closed it after {read} of the {len} bytes of a {} frame",
                    M::CONNECTION,
                    M::tag_name(header[4])
                ),
            ));
        }
        self.received += FRAME_HEADER_LEN + u64::from(len);
        M::decode(header[4], &payload)
    }
}

/// Frame vectors shared by the protocols' tests: a case is one whole frame in
/// format-spec/vectors/, checked (or written) and decoded back.
#[cfg(test)]
pub(crate) mod vectors {
    use super::FrameMessage;
    use crate::crypto::testvec::{Vector, pattern};
    use crate::ids::ChunkId;

    /// The chunk id `P(seed, 32)`.
    pub(crate) fn id(seed: u8) -> ChunkId {
        ChunkId(pattern(seed, 32).try_into().unwrap())
    }

    /// A whole frame: length, tag, payload.
    pub(crate) fn frame<M: FrameMessage>(msg: &M) -> Vec<u8> {
        let (tag, payload) = msg.encode();
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.push(tag);
        out.extend_from_slice(&payload);
        out
    }

    /// Check `msg`'s frame against the vector `name` (written in writing mode), and that the
    /// stored bytes decode to `msg`.
    pub(crate) fn case<M: FrameMessage + PartialEq + std::fmt::Debug>(
        name: &str,
        description: &str,
        msg: &M,
    ) {
        let bytes = frame(msg);
        let mut v = Vector::default();
        v.field("expect", "success")
            .field("description", description)
            .field("tag", format!("0x{:02x}", bytes[4]));
        v.set_data_hex(&bytes);
        v.check_or_write(name);
        let stored = Vector::load(name).data_hex();
        let decoded = M::decode(stored[4], &stored[5..]).unwrap();
        assert_eq!(&decoded, msg, "{name}: decodes to another message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header claiming the largest payload, and then the stream ends: found by the
    /// wire fuzz target, where nine bytes made the reader allocate 16 MiB before reading any
    /// payload. The buffer now grows with what arrives, and the short frame is an `Io` error.
    #[test]
    fn frame_length_claim_allocates_nothing_before_the_bytes_arrive() {
        let mut stream = MAX_FRAME_PAYLOAD.to_le_bytes().to_vec();
        stream.extend_from_slice(&[0x22, 1, 2, 3]);
        let mut conn = Conn::new(stream.as_slice(), std::io::sink());
        let err = conn.recv().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(
            err.message()
                .contains("closed it after 3 of the 33554432 bytes of a PutChunks frame"),
            "{err}"
        );
        assert_eq!(conn.received, 0);
    }

    #[test]
    fn a_whole_frame_is_read() {
        let mut stream = Vec::new();
        Conn::new(std::io::empty(), &mut stream)
            .send(&Message::ForgetOk(7))
            .unwrap();
        let mut conn = Conn::new(stream.as_slice(), std::io::sink());
        assert_eq!(conn.recv().unwrap(), Message::ForgetOk(7));
        assert_eq!(conn.received, stream.len() as u64);
    }
}
