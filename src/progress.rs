//! Progress bars for the commands a person watches (`summarize`, `once`): one bar per report
//! being read, on stderr, when it is a terminal. Off unless a command turns them on, so the
//! daemon and scripts get plain logs.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::report::read::Progress;

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Shows progress bars from now on, if stderr is a terminal.
pub fn enable() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let _ = BARS.set(MultiProgress::new());
    }
}

/// Shows `progress` as a bar named `name` until the returned guard is dropped.
pub fn track(name: &str, size: Option<u64>, progress: Arc<Progress>) -> Option<Tracked> {
    let bars = BARS.get()?;
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
    let updater = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(progress.downloaded.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    Some(Tracked { bar, updater })
}

/// A bar on screen; it goes when this is dropped.
pub struct Tracked {
    bar: ProgressBar,
    updater: tokio::task::JoinHandle<()>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.updater.abort();
        self.bar.finish_and_clear();
    }
}
