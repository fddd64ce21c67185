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

impl Time {
    /// Whole seconds, as an RFC 3339 UTC time like `2026-11-27T16:31:05Z` (the ENI tag
    /// `node.k8s.amazonaws.com/createdAt`).
    pub fn to_rfc3339(self) -> String {
        let secs = self.0 / 1_000_000_000;
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
        let rem = secs % 86_400;
        // Civil from days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }

    /// Parses an RFC 3339 UTC time (fractions of a second are dropped); `None` when it is not
    /// one.
    pub fn parse_rfc3339(t: &str) -> Option<Time> {
        let t = t.strip_suffix('Z')?;
        let (date, time) = t.split_once('T')?;
        let mut d = date.split('-').map(|p| p.parse::<i64>());
        let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
        let mut h = time
            .split(':')
            .map(|p| p.split('.').next().unwrap_or("0").parse::<i64>());
        let (hh, mm, ss) = (h.next()?.ok()?, h.next()?.ok()?, h.next()?.ok()?);
        if d.next().is_some() || h.next().is_some() {
            return None;
        }
        if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        // Days from civil (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss)
            .ok()
            .map(Time::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            1_795_000_000,
            4_102_444_800,
        ] {
            let t = Time::from_secs(secs);
            assert_eq!(
                Time::parse_rfc3339(&t.to_rfc3339()),
                Some(t),
                "{}",
                t.to_rfc3339()
            );
        }
        assert_eq!(
            Time::from_secs(1_700_000_000).to_rfc3339(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            Time::parse_rfc3339("2023-11-14T22:13:20.123Z"),
            Some(Time::from_secs(1_700_000_000))
        );
        for bad in [
            "yesterday",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T25:13:20Z",
            "2023-11-14T22:13:20:01Z",
        ] {
            assert_eq!(Time::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
