//! Durations spelled the way Consul (and Go's `time.ParseDuration`) spells them:
//! `10s`, `1m30s`, `500ms`, `1.5h`, `72h`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written as Go writes one (`"10s"`, `"1m30s"`, `"250ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

/// Why a duration string did not parse. The message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration; write a number and a unit, such as \"10s\"")]
    Empty,
    /// A negative duration where only non-negative ones make sense.
    #[error("negative duration {0:?}; durations here are never negative")]
    Negative(String),
    /// A number without a unit (other than `0`).
    #[error(
        "missing unit in duration {0:?}; add one of ns, us, ms, s, m, h (for example \"{0}s\")"
    )]
    MissingUnit(String),
    /// A unit Go does not know.
    #[error("unknown unit {unit:?} in duration {input:?}; valid units are ns, us, ms, s, m, h")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// Something that is not a number where a number was expected.
    #[error("invalid duration {0:?}; expected a number and a unit, such as \"10s\" or \"1m30s\"")]
    Invalid(String),
    /// Larger than this program can represent.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const NANOS_PER: [(&str, f64); 7] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
];

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        if s.starts_with('-') {
            return Err(DurationError::Negative(input.to_owned()));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        let mut rest = s;
        let mut total_nanos: f64 = 0.0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if number_len == 0 {
                return Err(DurationError::Invalid(input.to_owned()));
            }
            let number: f64 = rest[..number_len]
                .parse()
                .map_err(|_| DurationError::Invalid(input.to_owned()))?;
            rest = &rest[number_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            if unit_len == 0 {
                return Err(DurationError::MissingUnit(input.to_owned()));
            }
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let (_, nanos_per_unit) = NANOS_PER
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(|| DurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    input: input.to_owned(),
                })?;
            total_nanos += number * nanos_per_unit;
        }
        if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
            return Err(DurationError::Overflow(input.to_owned()));
        }
        Ok(GoDuration(Duration::from_nanos(total_nanos.round() as u64)))
    }
}

impl fmt::Display for GoDuration {
    /// Formats as Go's `Duration.String` does for whole units: `1h2m3s`, `1.5s`, `250ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000 {
            return write!(f, "{nanos}ns");
        }
        if nanos < 1_000_000 {
            return write!(f, "{}us", trim_fraction(nanos as f64 / 1e3));
        }
        if nanos < 1_000_000_000 {
            return write!(f, "{}ms", trim_fraction(nanos as f64 / 1e6));
        }
        let whole_secs = self.0.as_secs();
        let hours = whole_secs / 3600;
        let minutes = (whole_secs % 3600) / 60;
        let seconds = (whole_secs % 60) as f64 + f64::from(self.0.subsec_nanos()) / 1e9;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{}s", trim_fraction(seconds))
    }
}

fn trim_fraction(value: f64) -> String {
    let text = format!("{value:.9}");
    let text = text.trim_end_matches('0');
    text.trim_end_matches('.').to_owned()
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"10s\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str) -> String {
        match input.parse::<GoDuration>() {
            Ok(d) => format!("{:?} = {d}", d.0),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn parses_like_go() {
        let cases = [
            "10s", "1m30s", "250ms", "1.5h", "72h", "0", "0s", "90s", "1h0m1.5s", "3us", "10x",
            "10", "", "-5s", "s", "1..2s",
        ];
        let actual: Vec<String> = cases
            .iter()
            .map(|c| format!("{c:?} -> {}", check(c)))
            .collect();
        expect_test::expect![[r#"
            "10s" -> 10s = 10s
            "1m30s" -> 90s = 1m30s
            "250ms" -> 250ms = 250ms
            "1.5h" -> 5400s = 1h30m0s
            "72h" -> 259200s = 72h0m0s
            "0" -> 0ns = 0s
            "0s" -> 0ns = 0s
            "90s" -> 90s = 1m30s
            "1h0m1.5s" -> 3601.5s = 1h0m1.5s
            "3us" -> 3µs = 3us
            "10x" -> error: unknown unit "x" in duration "10x"; valid units are ns, us, ms, s, m, h
            "10" -> error: missing unit in duration "10"; add one of ns, us, ms, s, m, h (for example "10s")
            "" -> error: empty duration; write a number and a unit, such as "10s"
            "-5s" -> error: negative duration "-5s"; durations here are never negative
            "s" -> error: invalid duration "s"; expected a number and a unit, such as "10s" or "1m30s"
            "1..2s" -> error: invalid duration "1..2s"; expected a number and a unit, such as "10s" or "1m30s""#]]
        .assert_eq(&actual.join("\n"));
    }

    #[test]
    fn display_round_trips() {
        for text in ["10s", "1m30s", "250ms", "1h30m0s", "3us", "0s", "1h0m1.5s"] {
            let parsed: GoDuration = text.parse().expect("test input is valid");
            assert_eq!(parsed.to_string(), text);
            assert_eq!(parsed.to_string().parse::<GoDuration>(), Ok(parsed));
        }
    }
}
