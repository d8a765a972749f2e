//! The two tasks that serve a control link: one writes packets, one reads them.
//!
//! A frame that does not decode as a packet, or one over the frame limit, is logged
//! and skipped: it costs that one message, never the link. Only a stream that can no
//! longer be framed (a negative length, an end in the middle of a frame, an I/O error)
//! ends the link.

use multiproc_core::{Body, Envelope, Packet, RemoteError, codec};
use multiproc_transport::MAX_FRAME_LEN;
use multiproc_transport::frame::{self, FrameError, FrameReader};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::router::{self, Outgoing};

/// Writes everything sent on `rx` to `w`, in order, until `rx` closes or a write fails.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut buf = Vec::with_capacity(256);
    let mut scratch = Vec::with_capacity(256);
    while let Some(out) = rx.recv().await {
        let result = match out {
            Outgoing::Packet(packet) => {
                buf.clear();
                match codec::encode_into(&packet, &mut buf) {
                    Ok(()) if buf.len() <= MAX_FRAME_LEN => {
                        frame::write_frame(&mut w, &buf, MAX_FRAME_LEN, &mut scratch).await
                    }
                    Ok(()) => {
                        refuse(
                            packet,
                            format!("{} bytes is over the frame limit", buf.len()),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        refuse(packet, e.to_string());
                        Ok(())
                    }
                }
            }
            Outgoing::Raw(bytes) => {
                frame::write_frame(&mut w, &bytes, usize::MAX, &mut scratch).await
            }
            Outgoing::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "control link closed for writing");
            return;
        }
    }
}

/// A packet the writer could not put on the wire: its caller learns why, if it waits.
fn refuse(packet: Packet, why: String) {
    tracing::warn!(%why, "cannot send a packet on a control link");
    if let Packet::Envelope(env) = packet {
        match env.body {
            Body::Call(_) => router::bounce(env, RemoteError::Encode(why)),
            Body::Reply(_) => router::route(Envelope {
                to: env.to,
                from: env.from,
                corr: env.corr,
                body: Body::Fail(RemoteError::Encode(why)),
            }),
            _ => {}
        }
    }
}

/// How a link's reader ended.
#[derive(Debug)]
pub(crate) enum LinkEnd {
    /// The peer closed its end.
    Eof,
    /// The stream broke and could not be framed any more.
    Broken(FrameError),
}

/// Reads packets from `reader` and hands each to `on_packet` until the link ends.
pub(crate) async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    peer: &str,
    mut on_packet: impl FnMut(Packet),
) -> LinkEnd {
    let mut buf = Vec::with_capacity(256);
    loop {
        match reader.read_frame(&mut buf).await {
            Ok(true) => match codec::decode::<Packet>(&buf) {
                Ok(packet) => on_packet(packet),
                Err(e) => {
                    tracing::warn!(peer, error = %e, "skipped a malformed frame on a control link")
                }
            },
            Ok(false) => return LinkEnd::Eof,
            Err(e @ FrameError::TooLarge { .. }) => {
                tracing::warn!(peer, error = %e, "skipped an oversized frame on a control link");
            }
            Err(e) => return LinkEnd::Broken(e),
        }
    }
}
