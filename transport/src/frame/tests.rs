//! Tests of the frame format and the decoder.

use super::*;

/// Doorbells and small frames, read in pieces that split their headers, never
/// move a buffer made with room for twice a read.
#[test]
fn a_buffer_made_up_front_never_grows_for_small_frames() {
    let mut d = FrameDecoder::with_capacity(MAX_FRAME_LEN, 2 * READ_CHUNK);
    let mut stream = Vec::new();
    for i in 0..10_000u32 {
        let payload = &i.to_be_bytes()[..(i % 5) as usize];
        stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        stream.extend_from_slice(payload);
    }
    let first = d.read_buf().as_ptr();
    let capacity = d.capacity();
    let mut frames = 0;
    for piece in stream.chunks(7) {
        let buf = d.read_buf();
        buf[..piece.len()].copy_from_slice(piece);
        d.commit(piece.len());
        while d.next_frame().unwrap().is_some() {
            frames += 1;
        }
        assert_eq!(d.capacity(), capacity, "the buffer grew");
    }
    assert_eq!(frames, 10_000);
    assert_eq!(d.read_buf().as_ptr(), first, "the buffer moved");
}

async fn frames_of(bytes: Vec<u8>, max: usize) -> Vec<Result<Vec<u8>, String>> {
    let mut r = FrameReader::new(&bytes[..], max);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match r.read_frame(&mut buf).await {
            Ok(true) => out.push(Ok(buf.clone())),
            Ok(false) => break,
            Err(e) => {
                let fatal = !matches!(e, FrameError::TooLarge { .. });
                out.push(Err(e.to_string()));
                if fatal {
                    break;
                }
            }
        }
    }
    out
}

async fn encoded(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for p in payloads {
        write_frame(&mut out, p, usize::MAX, &mut scratch)
            .await
            .unwrap();
    }
    out
}

#[tokio::test]
async fn round_trip() {
    let big = vec![7u8; 100_000];
    let bytes = encoded(&[b"", b"abc", &big]).await;
    let got = frames_of(bytes, MAX_FRAME_LEN).await;
    assert_eq!(got, vec![Ok(vec![]), Ok(b"abc".to_vec()), Ok(big)]);
}

#[tokio::test]
async fn oversized_frame_is_skipped_and_the_next_one_arrives() {
    let bytes = encoded(&[b"first", &[1u8; 100], b"after"]).await;
    let got = frames_of(bytes, 10).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], Ok(b"first".to_vec()));
    assert_eq!(
        got[1],
        Err("frame of 100 bytes is over the limit of 10 bytes".into())
    );
    assert_eq!(got[2], Ok(b"after".to_vec()));
}

#[tokio::test]
async fn absurd_length_prefix_allocates_nothing() {
    // -1 then 2^62: would be 4 EiB if believed.
    let mut bytes = (-1i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    let got = frames_of(bytes, MAX_FRAME_LEN).await;
    assert_eq!(got.len(), 2);
    assert!(got[0].as_ref().unwrap_err().contains("over the limit"));
    assert!(got[1].as_ref().unwrap_err().contains("ended in the middle"));
}

#[tokio::test]
async fn truncated_frame_is_an_error() {
    let mut bytes = encoded(&[b"hello"]).await;
    bytes.truncate(6);
    let got = frames_of(bytes, MAX_FRAME_LEN).await;
    assert_eq!(
        got,
        vec![Err(
            "stream ended in the middle of a frame (2 of 5 bytes)".into()
        )]
    );
}

#[tokio::test]
async fn negative_length_is_fatal() {
    let got = frames_of((-5i32).to_be_bytes().to_vec(), MAX_FRAME_LEN).await;
    assert_eq!(got, vec![Err("bad frame length prefix -5".into())]);
}

#[tokio::test]
async fn outgoing_oversize_writes_nothing() {
    let mut out = Vec::new();
    let err = write_frame(&mut out, &[0u8; 11], 10, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { len: 11, max: 10 }));
    assert!(out.is_empty());
}

#[test]
fn huge_lengths_use_the_long_header() {
    let mut h = [0u8; 12];
    assert_eq!(header(1 << 31, &mut h), 12);
    assert_eq!(&h[..4], &[0xff; 4]);
    assert_eq!(u64::from_be_bytes(h[4..12].try_into().unwrap()), 1 << 31);
}

/// Feeds `bytes` to a decoder in chunks of `chunk` and collects what comes out.
fn decode_chunked(bytes: &[u8], chunk: usize, max: usize) -> Vec<Result<Vec<u8>, String>> {
    let mut d = FrameDecoder::new(max);
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(Ok(f.to_vec())),
                Ok(None) => break,
                Err(e) => {
                    let fatal = matches!(e, FrameError::BadLength(_));
                    out.push(Err(e.to_string()));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    if let Err(e) = d.finish() {
        out.push(Err(e.to_string()));
    }
    out
}

#[tokio::test]
async fn decoder_gives_the_same_frames_for_any_chunking() {
    let bytes = encoded(&[b"one", &[9u8; 40], b"", b"three"]).await;
    let want = decode_chunked(&bytes, bytes.len(), 20);
    assert_eq!(want.len(), 4);
    assert_eq!(want[0], Ok(b"one".to_vec()));
    assert!(want[1].as_ref().unwrap_err().contains("over the limit"));
    assert_eq!(want[2], Ok(vec![]));
    assert_eq!(want[3], Ok(b"three".to_vec()));
    for chunk in 1..bytes.len() {
        assert_eq!(
            decode_chunked(&bytes, chunk, 20),
            want,
            "chunk size {chunk}"
        );
    }
}

#[tokio::test]
async fn decoder_reading_in_place_skips_without_growing() {
    let big = vec![1u8; 10 * READ_CHUNK];
    let bytes = encoded(&[&big, b"next"]).await;
    let mut d = FrameDecoder::new(100);
    let mut fed = 0;
    let mut out = Vec::new();
    while fed < bytes.len() {
        let room = d.read_buf();
        let n = room.len().min(bytes.len() - fed).min(1000);
        room[..n].copy_from_slice(&bytes[fed..fed + n]);
        d.commit(n);
        fed += n;
        while d.has_next() {
            out.push(
                d.next_frame()
                    .map(|f| f.map(<[u8]>::to_vec))
                    .map_err(|e| e.to_string()),
            );
        }
        assert!(d.buf.len() <= 2 * READ_CHUNK, "skipped bytes were stored");
    }
    assert_eq!(out.len(), 2);
    assert!(out[0].as_ref().unwrap_err().contains("over the limit"));
    assert_eq!(out[1], Ok(Some(b"next".to_vec())));
}

#[test]
fn read_buf_has_room_for_the_rest_of_a_known_frame() {
    let mut d = FrameDecoder::new(MAX_FRAME_LEN);
    d.push(&(100_000i32).to_be_bytes());
    d.push(&[0u8; 10]);
    assert!(d.read_buf().len() >= 100_000 - 10);
}

#[test]
fn an_announced_length_is_not_allocated_before_its_bytes_arrive() {
    // (header, announced length): the largest 4-byte length and the long form's 2^62,
    // both within the default limit, so the decoder waits for them.
    let mut long = (-1i32).to_be_bytes().to_vec();
    long.extend_from_slice(&(1u64 << 62).to_be_bytes());
    let cases: [(Vec<u8>, u64); 2] = [
        (0x7fff_fffei32.to_be_bytes().to_vec(), 0x7fff_fffe),
        (long, 1 << 62),
    ];
    for (header, len) in cases {
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        d.push(&header);
        let mut fed = 0usize;
        // Feed 8 MiB in read-sized pieces, as a socket would.
        while fed < 8 << 20 {
            let room = d.read_buf();
            let n = room.len().min(64 << 10);
            room[..n].fill(0xAB);
            d.commit(n);
            fed += n;
            assert!(matches!(d.next_frame(), Ok(None)));
            assert!(
                d.capacity() <= 4 * fed + 4 * GROW_MIN,
                "{len}: {} bytes held for {fed} received",
                d.capacity()
            );
        }
        assert!(matches!(
            d.finish(),
            Err(FrameError::Truncated { expected, got }) if expected == len && got == fed as u64
        ));
    }
}

#[test]
fn a_frame_bigger_than_the_grow_steps_arrives_whole() {
    let len = 5 * GROW_MIN + 123;
    let mut bytes = (len as i32).to_be_bytes().to_vec();
    bytes.extend((0..len).map(|i| (i % 251) as u8));
    let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut fed = 0;
    let mut reads = 0;
    while fed < bytes.len() {
        let room = d.read_buf();
        let n = room.len().min(bytes.len() - fed);
        room[..n].copy_from_slice(&bytes[fed..fed + n]);
        d.commit(n);
        fed += n;
        reads += 1;
    }
    assert!(reads < 10, "the buffer grows geometrically: {reads} reads");
    assert_eq!(d.next_frame().unwrap(), Some(&bytes[4..]));
}

#[test]
fn has_next_matches_next_frame() {
    let mut d = FrameDecoder::new(8);
    assert!(!d.has_next());
    d.push(&[0, 0, 0, 2, 7]);
    assert!(!d.has_next());
    d.push(&[8]);
    assert!(d.has_next());
    assert_eq!(d.next_frame().unwrap(), Some(&[7u8, 8][..]));
    d.push(&[0, 0, 0, 9]);
    assert!(
        d.has_next(),
        "an oversized header is reported without its bytes"
    );
    assert!(d.next_frame().is_err());
    assert!(!d.has_next(), "while skipping there is nothing to report");
}

#[test]
fn bad_length_poisons_the_decoder() {
    let mut d = FrameDecoder::new(8);
    d.push(&(-7i32).to_be_bytes());
    assert!(matches!(d.next_frame(), Err(FrameError::BadLength(-7))));
    d.push(&[0, 0, 0, 1, 1]);
    assert!(matches!(d.next_frame(), Err(FrameError::BadLength(-7))));
    assert!(d.has_next());
}

#[test]
fn finish_reports_where_the_stream_ended() {
    // (bytes pushed, max, expected finish message or None)
    let long_header = [0xff, 0xff, 0xff, 0xff, 0, 0];
    let cases: &[(&[u8], usize, Option<&str>)] = &[
        (&[], 8, None),
        (&[0, 0], 8, Some("(2 of 4 bytes)")),
        (&long_header, 8, Some("(2 of 8 bytes)")),
        (&[0, 0, 0, 3, 1], 8, Some("(1 of 3 bytes)")),
        (&[0, 0, 0, 30, 1, 2], 8, Some("(2 of 30 bytes)")),
    ];
    for (bytes, max, want) in cases {
        let mut d = FrameDecoder::new(*max);
        d.push(bytes);
        while let Ok(Some(_)) = d.next_frame() {}
        let got = d.finish().err().map(|e| e.to_string());
        match want {
            None => assert_eq!(got, None, "{bytes:?}"),
            Some(w) => assert!(
                got.as_deref().unwrap_or("").contains(w),
                "{bytes:?}: {got:?}"
            ),
        }
        assert!(d.finish().is_ok(), "finish resets");
    }
}

#[test]
fn a_big_frame_does_not_pin_its_buffer() {
    let mut d = FrameDecoder::new(MAX_FRAME_LEN);
    let len = 2 * KEEP_CAPACITY;
    d.push(&(len as i32).to_be_bytes());
    d.push(&vec![5u8; len]);
    assert_eq!(d.next_frame().unwrap().map(<[u8]>::len), Some(len));
    d.push(&[0, 0, 0, 0]);
    assert!(d.buf.len() <= KEEP_CAPACITY);
    assert_eq!(d.next_frame().unwrap(), Some(&[][..]));
}

#[test]
fn debug_does_not_dump_payload() {
    let mut d = FrameDecoder::new(8);
    d.push(&[0, 0, 0, 3, 0xAB, 0xCD]);
    let s = format!("{d:?}");
    assert!(s.contains("buffered: 6"), "{s}");
    assert!(!s.contains("171"), "{s}");
}

proptest::proptest! {
    #[test]
    fn any_frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..20)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
        let got = rt.block_on(async { frames_of(encoded(&refs).await, MAX_FRAME_LEN).await });
        let want: Vec<Result<Vec<u8>, String>> = payloads.into_iter().map(Ok).collect();
        proptest::prop_assert_eq!(got, want);
    }

    #[test]
    fn decoder_round_trips_any_frames_in_any_chunks(
        payloads in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..20),
        chunk in 1usize..64,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
        let bytes = rt.block_on(encoded(&refs));
        let want: Vec<Result<Vec<u8>, String>> = payloads.into_iter().map(Ok).collect();
        proptest::prop_assert_eq!(decode_chunked(&bytes, chunk, MAX_FRAME_LEN), want);
    }
}
