//! Human output: tables, sizes, and the progress bar.

use std::io::IsTerminal;

use backup_core::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// Formats bytes with binary units.
pub fn size(b: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(
        header
            .iter()
            .map(|h| comfy_table::Cell::new(h).add_attribute(comfy_table::Attribute::Bold)),
    );
    t
}

/// A progress bar on stderr when it is a terminal (and not --json / --quiet).
pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn new(enabled: bool) -> Bar {
        if !enabled || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {msg} {bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        Bar(Some(pb))
    }
}

impl Drop for Bar {
    /// The bar disappears when the operation's progress object goes out of scope.
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64, _items: u64) {
        if let Some(pb) = &self.0 {
            pb.set_length(bytes);
            pb.set_style(
                ProgressStyle::with_template("[{elapsed_precise}] {msg} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
    }
    fn add_bytes(&self, b: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(b);
        }
    }
    fn add_item(&self) {}
    fn phase(&self, name: &str) {
        if let Some(pb) = &self.0 {
            pb.set_message(name.to_string());
        }
    }
}
