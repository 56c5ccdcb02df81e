//! `FrameHeader::parse` on arbitrary bytes: never panics, and whatever
//! parses re-encodes (minimal encoding) to exactly the bytes it came from.
#![no_main]

use chito::frame::{FrameHeader, MAX_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match FrameHeader::parse(data) {
        Ok(Some((header, n))) => {
            assert!(
                (2..=MAX_HEADER_LEN).contains(&n) && n <= data.len(),
                "header length {n} out of range for {} input bytes",
                data.len()
            );
            assert_eq!(header.encoded_len(), n, "encoded_len disagrees with parse");
            let mut out = [0u8; MAX_HEADER_LEN];
            let m = header.encode(&mut out);
            assert_eq!(&out[..m], &data[..n], "re-encoding differs: {header:?}");
            // Any strict prefix of a complete header is "need more bytes"
            // (the checks that can fail need the whole length field, which
            // a prefix either has in full, failing identically, or lacks).
            for cut in 0..n {
                assert_eq!(
                    FrameHeader::parse(&data[..cut]),
                    Ok(None),
                    "prefix of {cut} bytes of a valid header"
                );
            }
            // Bytes after the header never change the parse.
            assert_eq!(FrameHeader::parse(&data[..n]), Ok(Some((header, n))));
        }
        Ok(None) => {
            assert!(
                data.len() < MAX_HEADER_LEN,
                "{} bytes always hold a whole header",
                data.len()
            );
        }
        Err(_) => {
            // Errors are final: more bytes never turn them into a header.
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0u8; MAX_HEADER_LEN]);
            assert!(FrameHeader::parse(&longer).is_err(), "error not stable");
        }
    }
});
