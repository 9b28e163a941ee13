//! Baseline for `bench/run.sh`: the time one core needs merely to inflate a report's ZIP member
//! (flate2 with zlib-rs, synchronous, output discarded). The pipeline is judged against it.
//!
//! `cargo bench --bench inflate -- FILE.zip`

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::time::Instant;

use flate2::read::DeflateDecoder;

fn main() -> io::Result<()> {
    let path = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .expect("usage: cargo bench --bench inflate -- FILE.zip");
    let mut zip = BufReader::with_capacity(256 * 1024, File::open(&path)?);
    let mut header = [0u8; 30];
    zip.read_exact(&mut header)?;
    assert_eq!(
        &header[..4],
        b"PK\x03\x04",
        "{path} does not start with a local file header"
    );
    let length_at = |at: usize| i64::from(u16::from_le_bytes([header[at], header[at + 1]]));
    zip.seek_relative(length_at(26) + length_at(28))?;

    let started = Instant::now();
    let inflated = io::copy(&mut DeflateDecoder::new(zip), &mut io::sink())?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "inflate-only: {inflated} bytes in {seconds:.3} s ({:.3} s per GB)",
        seconds / (inflated as f64 / 1e9)
    );
    Ok(())
}
