//! permessage-deflate throughput and ratio on a JSON-like corpus.
//!
//! `cargo bench -p chito-bench --bench deflate`
//!
//! For each setting it measures, in the same run:
//! - chito: `Sender::send` of a text message (compress + frame + mask, client role)
//!   and `Connection::poll_event` on the server (unmask + inflate + UTF-8);
//! - raw flate2 with the same window and level: compress with a sync flush
//!   and inflate, no framing — the floor chito's framing sits on.
//!
//! It prints MB/s of message payload (median of 5 runs), the compression
//! ratio (wire bytes / payload bytes) and chito's throughput as a fraction
//! of raw flate2's.

use std::time::Instant;

use chito::deflate::DeflateParams;
use chito::handshake::Negotiated;
use chito::{Config, Connection, Event, Message, Role};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

fn corpus() -> Vec<String> {
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    (0..2000)
        .map(|i| {
            let items: Vec<String> = (0..(i % 9 + 3))
                .map(|j| {
                    format!(
                        r#"{{"id":{},"name":"{}-{}","price":{}.{:02},"tags":["{}","{}"],"active":{}}}"#,
                        i * 31 + j,
                        words[(i + j) % 8],
                        j,
                        (i * 7 + j * 13) % 500,
                        (i + j) % 100,
                        words[j % 8],
                        words[(i * 3) % 8],
                        (i + j) % 2 == 0
                    )
                })
                .collect();
            format!(r#"{{"type":"update","seq":{i},"user":"user{}","items":[{}]}}"#, i % 97, items.join(","))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Returns (compress MB/s, inflate MB/s, wire/payload ratio) for chito.
fn chito_run(corpus: &[String], takeover: bool, level: u32) -> (f64, f64, f64) {
    let params = DeflateParams {
        server_no_context_takeover: !takeover,
        client_no_context_takeover: !takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut negotiated = Negotiated::default();
    negotiated.deflate = Some(params);
    let mut config = Config::default();
    let mut deflate = config.deflate.clone().unwrap();
    deflate.compression_level = level;
    config.deflate = Some(deflate);
    let mut client =
        Connection::with_negotiated(Role::Client, config.clone(), negotiated.clone(), &[]);
    let mut server = Connection::with_negotiated(Role::Server, config, negotiated, &[]);
    let payload: usize = corpus.iter().map(String::len).sum();

    let start = Instant::now();
    let mut wire = Vec::with_capacity(payload);
    for m in corpus {
        client.sender().send(Message::Text(m)).unwrap();
        wire.extend_from_slice(client.pending_output());
        let n = client.pending_output().len();
        client.consume_output(n);
    }
    let compress = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut received = 0;
    for chunk in wire.chunks(64 * 1024) {
        server.feed(chunk);
        while let Some((event, _)) = server.poll_event().unwrap() {
            if let Event::Text(t) = event {
                received += t.len();
            }
        }
    }
    let inflate = start.elapsed().as_secs_f64();
    assert_eq!(received, payload);
    let mb = payload as f64 / 1e6;
    (
        mb / compress,
        mb / inflate,
        wire.len() as f64 / payload as f64,
    )
}

/// The same work with flate2 directly, no framing.
fn raw_run(corpus: &[String], takeover: bool, level: u32) -> (f64, f64) {
    let payload: usize = corpus.iter().map(String::len).sum();
    let mut compressor = Compress::new_with_window_bits(Compression::new(level), false, 15);
    let start = Instant::now();
    let mut compressed: Vec<Vec<u8>> = Vec::with_capacity(corpus.len());
    for m in corpus {
        let mut out = Vec::with_capacity(m.len() + 64);
        compressor
            .compress_vec(m.as_bytes(), &mut out, FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - 4);
        if !takeover {
            compressor.reset();
        }
        compressed.push(out);
    }
    let compress = start.elapsed().as_secs_f64();
    let mut decompressor = Decompress::new_with_window_bits(false, 15);
    let start = Instant::now();
    let mut total = 0;
    let mut out = Vec::with_capacity(1 << 20);
    for c in &compressed {
        out.clear();
        let mut input = c.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        decompressor
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        total += out.len();
        if !takeover {
            decompressor.reset(false);
        }
    }
    let inflate = start.elapsed().as_secs_f64();
    assert_eq!(total, payload);
    let mb = payload as f64 / 1e6;
    (mb / compress, mb / inflate)
}

fn main() {
    let corpus = corpus();
    let payload: usize = corpus.iter().map(String::len).sum();
    println!(
        "corpus: {} messages, {:.2} MB, mean {} B",
        corpus.len(),
        payload as f64 / 1e6,
        payload / corpus.len()
    );
    println!(
        "{:<22} {:>7} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "setting",
        "ratio",
        "chito c MB/s",
        "raw c MB/s",
        "chito i MB/s",
        "raw i MB/s",
        "c chito/raw",
        "i chito/raw"
    );
    for takeover in [false, true] {
        for level in [1u32, 6] {
            let mut runs = Vec::new();
            let mut raws = Vec::new();
            for _ in 0..5 {
                runs.push(chito_run(&corpus, takeover, level));
                raws.push(raw_run(&corpus, takeover, level));
            }
            let cc = median(runs.iter().map(|r| r.0).collect());
            let ci = median(runs.iter().map(|r| r.1).collect());
            let ratio = runs[0].2;
            let rc = median(raws.iter().map(|r| r.0).collect());
            let ri = median(raws.iter().map(|r| r.1).collect());
            let name = format!(
                "{} level {level}",
                if takeover { "takeover" } else { "no-takeover" }
            );
            println!(
                "{name:<22} {ratio:>7.3} {cc:>12.1} {rc:>12.1} {ci:>12.1} {ri:>12.1} {:>9.2} {:>9.2}",
                cc / rc,
                ci / ri
            );
        }
    }
}
