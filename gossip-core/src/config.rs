//! The crate's single configuration validation error.
//!
//! Every protocol's `*Config` struct has a `validate()` returning [`ConfigError`]; the
//! constructors of the state machines call it, so an invalid configuration never reaches a
//! running protocol. Each variant names the offending field (as spelled in the struct) and the
//! bound it broke.
//!
//! # Serialized form
//!
//! Every `*Config` struct derives serde's `Serialize` and `Deserialize` (a node reads them from
//! a TOML file): missing fields take their [`Default`], unknown fields are refused, durations
//! are integer milliseconds under the field's own name (`ack_timeout = 300`), and
//! `max_envelope_len` is left out (a node derives it from its datagram size and cipher).

use std::time::Duration;

/// A configuration field is outside its documented bounds.
///
/// Returned by `validate()` and by the constructors (for example
/// [`crate::dissemination::Dissemination::new`]); nothing was constructed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `field` is below its minimum.
    #[error("{field} is {value} but must be at least {min}")]
    TooSmall {
        /// The configuration field, for example `"fanout"`.
        field: &'static str,
        /// The configured value.
        value: usize,
        /// The smallest allowed value.
        min: usize,
    },
    /// `field` is above its maximum.
    #[error("{field} is {value} but must be at most {max}")]
    TooLarge {
        /// The configuration field, for example `"acks_needed"`.
        field: &'static str,
        /// The configured value.
        value: usize,
        /// The largest allowed value.
        max: usize,
    },
    /// `field` is outside a range bounded on both sides.
    #[error("{field} is {value} but must be in {min}..={max}")]
    OutOfRange {
        /// The configuration field, for example `"decrease_percent"`.
        field: &'static str,
        /// The configured value.
        value: usize,
        /// The smallest allowed value.
        min: usize,
        /// The largest allowed value.
        max: usize,
    },
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The configuration field, for example `"ack_timeout"`.
        field: &'static str,
    },
    /// A duration is shorter than another field it must not undercut.
    #[error("{field} ({value:?}) must be at least {other} ({min:?})")]
    DurationBelow {
        /// The configuration field that is too short, for example `"seen_ttl"`.
        field: &'static str,
        /// Its configured value.
        value: Duration,
        /// The field it is compared with, for example `"cache_ttl"`.
        other: &'static str,
        /// The value of `other`, the smallest allowed value of `field`.
        min: Duration,
    },
    /// A floating-point field is NaN, infinite, zero or negative.
    #[error("{field} must be a finite number greater than zero")]
    NotPositiveFinite {
        /// The configuration field, for example `"phi_threshold"`.
        field: &'static str,
    },
}

/// Checks `value >= min`.
pub(crate) fn at_least(field: &'static str, value: usize, min: usize) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::TooSmall { field, value, min });
    }
    Ok(())
}

/// Checks `value <= max`.
pub(crate) fn at_most(field: &'static str, value: usize, max: usize) -> Result<(), ConfigError> {
    if value > max {
        return Err(ConfigError::TooLarge { field, value, max });
    }
    Ok(())
}

/// Checks `min <= value <= max`.
pub(crate) fn in_range(
    field: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// Checks `value > 0`.
pub(crate) fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::ZeroDuration { field });
    }
    Ok(())
}

/// Checks that `value` is finite and greater than zero (so not NaN).
pub(crate) fn positive_finite(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(ConfigError::NotPositiveFinite { field });
    }
    Ok(())
}

/// Checks `value >= min` where `min` is the value of the field `other`.
pub(crate) fn duration_at_least(
    field: &'static str,
    value: Duration,
    other: &'static str,
    min: Duration,
) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::DurationBelow {
            field,
            value,
            other,
            min,
        });
    }
    Ok(())
}

/// Serde of a [`Duration`] as an integer number of milliseconds (sub-millisecond parts are
/// truncated when serializing).
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_and_bound() {
        let e = at_least("fanout", 0, 1).unwrap_err();
        assert_eq!(e.to_string(), "fanout is 0 but must be at least 1");
        let e = at_most("acks_needed", 4, 3).unwrap_err();
        assert_eq!(e.to_string(), "acks_needed is 4 but must be at most 3");
        let e = positive("ack_timeout", Duration::ZERO).unwrap_err();
        assert_eq!(e.to_string(), "ack_timeout must be greater than zero");
        let e = duration_at_least(
            "seen_ttl",
            Duration::from_secs(1),
            "cache_ttl",
            Duration::from_secs(30),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "seen_ttl (1s) must be at least cache_ttl (30s)"
        );
        let e = positive_finite("phi_threshold", f64::NAN).unwrap_err();
        assert_eq!(
            e.to_string(),
            "phi_threshold must be a finite number greater than zero"
        );
        for bad in [0.0, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(positive_finite("x", bad).is_err());
        }
        assert!(positive_finite("x", f64::MIN_POSITIVE).is_ok());
        let e = in_range("decrease_percent", 100, 1, 99).unwrap_err();
        assert_eq!(
            e.to_string(),
            "decrease_percent is 100 but must be in 1..=99"
        );
        assert!(in_range("x", 1, 1, 1).is_ok());
        assert!(in_range("x", 0, 1, 1).is_err());
        assert!(at_least("x", 1, 1).is_ok());
        assert!(at_most("x", 1, 1).is_ok());
    }
}
