//! The shared multipart grammar table (`mjpegd::mjpeg::cases`) through the load client's
//! parser, in several chunkings and both body framings. `crates/mjpegd/tests/grammar_cases.rs`
//! runs the same table through the server's reader.

use mjpegd::mjpeg::cases::{Case, cases};
use mjpegd_load::parse::{Framing, StreamParser, multipart_boundary};

/// The parts the load client accepted (body length, timestamp) and how many it counted invalid.
fn parse(case: &Case, chunk: usize, chunked: bool) -> (Vec<(u64, Option<u64>)>, usize) {
    let boundary = multipart_boundary(case.content_type)
        .unwrap_or_else(|| panic!("{}: no boundary in {:?}", case.name, case.content_type));
    let (framing, wire) = if chunked {
        let mut w = Vec::new();
        for c in case.body.chunks(1000) {
            w.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            w.extend_from_slice(c);
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"0\r\n\r\n");
        (Framing::Chunked, w)
    } else {
        (Framing::Close, case.body.clone())
    };
    let mut parser = StreamParser::new(framing, &boundary);
    let mut ok = Vec::new();
    let mut invalid = 0;
    for piece in wire.chunks(chunk) {
        parser
            .feed(piece, &mut |p| match p.verdict {
                Ok(()) => ok.push((p.body_len, p.timestamp_us)),
                Err(_) => invalid += 1,
            })
            .expect("valid chunking");
    }
    (ok, invalid)
}

/// What is wrong with the load client's outcome for `case`, if anything.
fn check(case: &Case) -> Option<String> {
    let want: Vec<(u64, Option<u64>)> = case
        .frames
        .iter()
        .filter(|f| f.conforms)
        .map(|f| (f.jpeg.len() as u64, f.timestamp_us))
        .collect();
    let flawed = case.frames.iter().filter(|f| !f.conforms).count();
    for chunked in [false, true] {
        for chunk in [usize::MAX, 1, 7, 64 << 10] {
            let (got, invalid) = parse(case, chunk, chunked);
            let how = format!("{} (chunks of {chunk}, chunked {chunked})", case.name);
            if got != want {
                return Some(format!("{how}: valid parts {got:?}, expected {want:?}"));
            }
            let invalid_ok = if case.damaged {
                invalid >= flawed.max(1)
            } else {
                invalid == flawed
            };
            if !invalid_ok {
                return Some(format!(
                    "{how}: {invalid} invalid parts ({flawed} flawed frames, damaged {})",
                    case.damaged
                ));
            }
        }
    }
    None
}

#[test]
fn every_case_through_the_load_client() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let failures: Vec<String> = cases.iter().filter_map(check).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
