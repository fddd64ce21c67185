//! The plugin's log: JSON lines appended to `pluginLogFile`, never stdout (stdout is the
//! runtime's channel for results).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

pub struct Log {
    file: Option<Mutex<File>>,
    debug: bool,
}

impl Log {
    pub fn open(path: &str, level: &str) -> Log {
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
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
        let line = serde_json::json!({"ts": ts.as_secs_f64(), "level": level, "pid": std::process::id(), "msg": msg});
        if let Ok(mut f) = f.lock() {
            let _ = writeln!(f, "{line}");
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
