//! Wall-clock instants as stored in the state file: UTC, RFC 3339 on disk, whole
//! milliseconds in memory. The decision takes `now` as one of these; only `main` reads the clock.

use k8s_openapi::jiff;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(d.as_millis() as i64)
    }

    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn from_secs(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// Time from `earlier` to `self`; zero when `earlier` is in the future (a clock that
    /// stepped back must never make a cooldown look expired or negative).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let ts: jiff::Timestamp = text
            .parse()
            .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
        Ok(Timestamp(ts.as_millisecond()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "@{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339_utc() {
        let t = Timestamp::from_secs(1_800_000_000);
        let s = t.to_string();
        assert_eq!(s, "2027-01-15T08:00:00Z");
        assert_eq!(Timestamp::parse(&s).unwrap(), t);
        assert_eq!(
            Timestamp::parse("2027-01-15T09:00:00+01:00").unwrap(),
            t,
            "offsets are normalised to UTC"
        );
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn since_never_goes_negative() {
        let a = Timestamp::from_secs(100);
        let b = Timestamp::from_secs(40);
        assert_eq!(a.since(b), Duration::from_secs(60));
        assert_eq!(b.since(a), Duration::ZERO);
    }
}
