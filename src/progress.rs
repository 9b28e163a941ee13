//! Showing how far a report has been read, for the commands that read reports (`summarize`,
//! `once`, `run`): a log line every 15 seconds, and, for a person watching a terminal, one bar
//! per report on stderr. Logs are routed through the bars so the two never tear each other.
//! The pipeline only counts ([`Progress`]); what is shown is decided here.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tracing_indicatif::writer::{IndicatifWriter, Stderr};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::report::read::Progress;

const LOG_EVERY: Duration = Duration::from_secs(15);
const BAR_EVERY: Duration = Duration::from_millis(100);

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Shows progress bars from now on, if stderr is a terminal. Call before the logs are set up,
/// so that [`log_writer`] routes them through the bars.
pub fn enable_bars() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let _ = BARS.set(MultiProgress::new());
    }
}

/// Where log lines go: stderr, through the bars when they are shown (each line is written while
/// the bars are cleared, then the bars are drawn again below it).
pub fn log_writer() -> BoxMakeWriter {
    match BARS.get() {
        Some(bars) => BoxMakeWriter::new(IndicatifWriter::<Stderr>::new(bars.clone())),
        None => BoxMakeWriter::new(std::io::stderr),
    }
}

/// Shows one report's progress until it is dropped, on every path out of the read.
pub struct Watch {
    logger: JoinHandle<()>,
    bar: Option<(ProgressBar, JoinHandle<()>)>,
}

/// Starts showing `progress` for the report named `name`, of `size` bytes when known.
pub fn watch(name: &str, size: Option<u64>, progress: Arc<Progress>) -> Watch {
    let bar = BARS.get().map(|bars| {
        let bar = bars.add(match size {
            Some(size) => ProgressBar::new(size),
            None => ProgressBar::no_length(),
        });
        let style = ProgressStyle::with_template(
            "{msg:40!} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("a valid template");
        bar.set_style(style);
        bar.set_message(name.to_owned());
        let updater = tokio::spawn({
            let (bar, progress) = (bar.clone(), progress.clone());
            async move {
                loop {
                    bar.set_position(progress.downloaded.load(Ordering::Relaxed));
                    tokio::time::sleep(BAR_EVERY).await;
                }
            }
        });
        (bar, updater)
    });
    Watch {
        logger: tokio::spawn(log_progress(progress, size)),
        bar,
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.logger.abort();
        if let Some((bar, updater)) = &self.bar {
            updater.abort();
            bar.finish_and_clear();
        }
    }
}

async fn log_progress(progress: Arc<Progress>, size: Option<u64>) {
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(started + LOG_EVERY, LOG_EVERY);
    loop {
        ticks.tick().await;
        let seconds = started.elapsed().as_secs_f64();
        let downloaded = progress.downloaded.load(Ordering::Relaxed);
        let rate = downloaded as f64 / seconds;
        let percent = size
            .filter(|&s| s > 0)
            .map(|s| 100.0 * downloaded as f64 / s as f64);
        let seconds_left = size.map(|s| s.saturating_sub(downloaded) as f64 / rate.max(1.0));
        tracing::info!(
            downloaded_bytes = downloaded,
            inflated_bytes = progress.inflated.load(Ordering::Relaxed),
            rows = progress.rows.load(Ordering::Relaxed),
            mb_per_second = format!("{:.1}", rate / 1e6),
            percent = percent.map(|p| format!("{p:.1}")),
            seconds_left = seconds_left.map(|s| s.round() as u64),
            "reading"
        );
    }
}
