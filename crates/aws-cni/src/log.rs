//! The plugin's log: JSON lines appended to `pluginLogFile`, never stdout (stdout is the
//! runtime's channel for results).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

pub struct Log {
    file: Option<Mutex<File>>,
    debug: bool,
}

impl Log {
    pub fn open(path: &str, level: &str) -> Log {
        let file = files::open_private_log(std::path::Path::new(path))
            .ok()
            .map(Mutex::new);
        Log {
            file,
            debug: level.eq_ignore_ascii_case("debug"),
        }
    }

    pub fn none() -> Log {
        Log {
            file: None,
            debug: false,
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(f) = &self.file else { return };
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = serde_json::json!({"ts": ts.as_secs_f64(), "level": level, "pid": std::process::id(), "msg": msg})
            .to_string();
        line.push('\n');
        // One write per line: an O_APPEND write is atomic, so concurrent plugins never interleave
        // (formatting straight into the file would issue a write per JSON token).
        if let Ok(mut f) = f.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    pub fn info(&self, msg: &str) {
        if self.debug {
            self.write("info", msg);
        }
    }

    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_never_interleave_lines() {
        // Two handles on one file stand for two plugin processes appending at once.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.log");
        let path = path.to_str().unwrap();
        std::thread::scope(|s| {
            for w in 0..2 {
                let log = Log::open(path, "debug");
                s.spawn(move || {
                    for i in 0..300 {
                        log.info(&format!("writer {w} line {i} {}", "x".repeat(64)));
                    }
                });
            }
        });
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.lines().count(), 600);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("interleaved line {line:?}: {e}"));
            assert_eq!(v["level"], "info");
        }
    }
}
