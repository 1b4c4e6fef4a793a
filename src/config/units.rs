//! Human-friendly units in the config file: durations ("90s", "5m", or an integer of
//! seconds) and byte quantities ("2Gi", "512Mi", "2g", or an integer of bytes).

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::fmt;
use std::time::Duration;

/// A duration read from the config. Integers are seconds; strings take a unit suffix
/// (`ms`, `s`, `m`, `h`, `d`) and may chain parts, as in "1m30s".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Secs(pub Duration);

impl Secs {
    pub const fn from_secs(s: u64) -> Self {
        Secs(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

/// The longest duration accepted (about 31,700 years): far past any sensible setting, and
/// small enough that adding it to a clock can never overflow.
const MAX_SECS: u64 = 1_000_000_000_000;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(n) = t.parse::<u64>() {
        if n > MAX_SECS {
            return Err(format!("duration {text:?} is out of range"));
        }
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} lacks a unit (use s, m, h, d or ms)"))?;
        if digits == 0 {
            return Err(format!("duration {text:?} is not a number with a unit"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {text:?} has a bad number"))?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => {
                return Err(format!(
                    "duration {text:?} has unknown unit {unit:?} (use ms, s, m, h or d)"
                ));
            }
        };
        let secs = number * scale;
        if !secs.is_finite() || secs > 1e12 {
            return Err(format!("duration {text:?} is out of range"));
        }
        total += Duration::from_secs_f64(secs);
        rest = &after[unit_len..];
    }
    Ok(total)
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: seconds as an integer, or a string like \"90s\" or \"5m\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                // Bounded like the string form: deadlines are added to clocks later.
                if v > MAX_SECS {
                    return Err(E::custom(format!("duration {v} is out of range")));
                }
                Ok(Secs(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("duration {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                parse_duration(v).map(Secs).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte quantity: integer bytes, Kubernetes suffixes (Ki, Mi, Gi, Ti, k, M, G, T) or
/// Docker's (b, k, m, g, t, binary multiples).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Bytes(pub u64);

pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let number: f64 = num
        .parse()
        .map_err(|_| format!("quantity {text:?} is not a number with an optional unit"))?;
    let mult: f64 = match unit {
        "" | "b" | "B" => 1.0,
        "Ki" | "k" | "K" | "kb" | "KB" | "KiB" => 1024.0,
        "Mi" | "m" | "M" | "mb" | "MB" | "MiB" => 1024.0 * 1024.0,
        "Gi" | "g" | "G" | "gb" | "GB" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "Ti" | "t" | "T" | "tb" | "TB" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "quantity {text:?} has unknown unit {unit:?} (use Ki, Mi, Gi, Ti or bytes)"
            ));
        }
    };
    let v = number * mult;
    if !v.is_finite() || !(0.0..=1e18).contains(&v) {
        return Err(format!("quantity {text:?} is out of range"));
    }
    Ok(v.round() as u64)
}

pub fn format_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (name, size) in UNITS {
        if b != 0 && b.is_multiple_of(size) {
            return format!("{}{name}", b / size);
        }
    }
    b.to_string()
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_bytes(self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte quantity: an integer, or a string like \"2Gi\" or \"512Mi\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
                u64::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::custom(format!("quantity {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                parse_bytes(v).map(Bytes).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_accepted_form() {
        let cases = [
            ("90", 90_000),
            ("90s", 90_000),
            ("5m", 300_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("250ms", 250),
            ("1.5s", 1500),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text).unwrap().as_millis(), ms, "{text}");
        }
        for bad in [
            "",
            "5x",
            "m",
            "-3s",
            "5 m",
            "1e400s",
            "18446744073709551615",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn durations_print_back_in_their_largest_whole_unit() {
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn quantities_parse_kubernetes_and_docker_suffixes() {
        assert_eq!(parse_bytes("2Gi").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(format_bytes(2 << 30), "2Gi");
        for bad in ["", "Gi", "2 Gi", "2Xi", "-1Gi"] {
            assert!(parse_bytes(bad).is_err(), "{bad} should be rejected");
        }
    }
}
