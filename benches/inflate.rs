//! Baseline for `bench/run.sh`: the time one core needs merely to inflate a report's bytes
//! (flate2 with zlib-rs, synchronous, output discarded): a ZIP's member, or gzip files (a CUR's
//! parts, one after the other). The pipeline is judged against it.
//!
//! `cargo bench --bench inflate -- FILE.zip` or `cargo bench --bench inflate -- PART.gz…`

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::time::Instant;

use flate2::read::{DeflateDecoder, MultiGzDecoder};

fn main() -> io::Result<()> {
    let paths: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    assert!(
        !paths.is_empty(),
        "usage: cargo bench --bench inflate -- FILE.zip | PART.gz…"
    );
    let mut readers: Vec<Box<dyn Read>> = Vec::new();
    for path in &paths {
        let mut file = BufReader::with_capacity(256 * 1024, File::open(path)?);
        if path.ends_with(".gz") {
            readers.push(Box::new(MultiGzDecoder::new(file)));
            continue;
        }
        let mut header = [0u8; 30];
        file.read_exact(&mut header)?;
        assert_eq!(
            &header[..4],
            b"PK\x03\x04",
            "{path} does not start with a local file header"
        );
        let length_at = |at: usize| i64::from(u16::from_le_bytes([header[at], header[at + 1]]));
        file.seek_relative(length_at(26) + length_at(28))?;
        readers.push(Box::new(DeflateDecoder::new(file)));
    }

    let started = Instant::now();
    let mut inflated = 0;
    for mut reader in readers {
        inflated += io::copy(&mut reader, &mut io::sink())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "inflate-only: {inflated} bytes in {seconds:.3} s ({:.3} s per GB)",
        seconds / (inflated as f64 / 1e9)
    );
    Ok(())
}
