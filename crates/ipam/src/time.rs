use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, passed in by the caller so the core never reads the clock.
/// Serialized as unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Time(u64);

impl Time {
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Time(nanos)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Time(secs.saturating_mul(1_000_000_000))
    }

    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Time(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    pub const fn unix_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    pub fn plus(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}
