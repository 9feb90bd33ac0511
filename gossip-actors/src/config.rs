//! Validation of a whole [`NodeConfig`], naming a bad field by its full path.
//!
//! Each protocol's `validate()` in [`gossip_core`] names the field as spelled in its own
//! struct (`fanout`); [`NodeConfig::validate`] checks every section and prefixes the section
//! (`dissemination.fanout`), which is the field's path in the node's TOML file
//! (`[dissemination]` table, `fanout` key). The node-level fields (`max_datagram`,
//! `event_capacity`, `set_queue_capacity`, the `[fault]` table) are checked here too.

use gossip_core::config::ConfigError;
use gossip_net::PACKET_OVERHEAD;
use gossip_net::codec::MIN_MAX_DATAGRAM;

use crate::node::NodeConfig;
use crate::transport::FaultConfigError;

/// Largest accepted [`NodeConfig::max_datagram`], in bytes: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM_LIMIT: usize = gossip_net::MAX_UDP_PAYLOAD;

/// A [`NodeConfig`] field is outside its documented bounds. Nothing was started.
///
/// [`field`](Self::field) is the field's full path, as in the TOML file; the message also
/// gives the value and the allowed range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeConfigError {
    /// A field of one protocol's section (`dissemination`, `tree`, `state`, `state.flow`,
    /// `failure`, or a discovery section such as `cyclon`).
    #[error("{}", qualified(section, error))]
    Section {
        /// The section's path, for example `"dissemination"` or `"state.flow"`.
        section: &'static str,
        /// The protocol's own error, naming the field within the section.
        error: ConfigError,
    },
    /// `max_datagram` is outside `MIN_MAX_DATAGRAM..=MAX_DATAGRAM_LIMIT` (128..=65,507 bytes).
    #[error("max_datagram is {value} but must be in {MIN_MAX_DATAGRAM}..={MAX_DATAGRAM_LIMIT}")]
    MaxDatagram {
        /// The configured value, in bytes.
        value: usize,
    },
    /// A capacity that must be at least 1 is 0 (`event_capacity`, `set_queue_capacity`,
    /// `inbound_limit.burst` while `inbound_limit.rate` is not 0).
    #[error("{field} is 0 but must be at least 1")]
    ZeroCapacity {
        /// The field.
        field: &'static str,
    },
    /// `fault.loss` is not a probability in `0.0..=1.0` (or is NaN).
    #[error("fault.loss is {value} but must be in 0..=1")]
    Loss {
        /// The configured value.
        value: f64,
    },
    /// `fault.delay` or `fault.max_delayed` is invalid (see [`crate::FaultInjection::validate`]).
    #[error("{}: {error}", fault_field(error))]
    Fault {
        /// What is wrong with the fault settings.
        error: FaultConfigError,
    },
}

/// The path of the `[fault]` field a [`FaultConfigError`] is about.
fn fault_field(error: &FaultConfigError) -> &'static str {
    match error {
        FaultConfigError::Loss(_) => "fault.loss",
        FaultConfigError::NoDelayQueue => "fault.max_delayed",
        _ => "fault.delay",
    }
}

impl NodeConfigError {
    /// The full path of the offending field, for example `"dissemination.fanout"`.
    pub fn field(&self) -> String {
        match self {
            NodeConfigError::Section { section, error } => {
                format!("{section}.{}", field_of(error).unwrap_or("?"))
            }
            NodeConfigError::MaxDatagram { .. } => "max_datagram".to_owned(),
            NodeConfigError::ZeroCapacity { field } => (*field).to_owned(),
            NodeConfigError::Loss { .. } => "fault.loss".to_owned(),
            NodeConfigError::Fault { error } => fault_field(error).to_owned(),
        }
    }

    /// Wraps a protocol error of `section`.
    pub fn section(section: &'static str) -> impl FnOnce(ConfigError) -> NodeConfigError {
        move |error| NodeConfigError::Section { section, error }
    }
}

/// The field a [`ConfigError`] names.
fn field_of(error: &ConfigError) -> Option<&'static str> {
    match error {
        ConfigError::TooSmall { field, .. }
        | ConfigError::TooLarge { field, .. }
        | ConfigError::OutOfRange { field, .. }
        | ConfigError::ZeroDuration { field }
        | ConfigError::DurationBelow { field, .. }
        | ConfigError::NotPositiveFinite { field } => Some(field),
        _ => None,
    }
}

/// Whether `name` is a plain field name (not an expression such as `2 × check_interval`).
fn is_field(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `error`'s message with the section prefixed to every field it names.
fn qualified(section: &str, error: &ConfigError) -> String {
    // A plain field gets the section prefix; in an expression such as
    // `2 × check_interval`, so does every field name in it (a word with an underscore).
    let name = |field: &str| {
        if is_field(field) {
            return format!("{section}.{field}");
        }
        field
            .split(' ')
            .map(|word| {
                if is_field(word) && word.contains('_') {
                    format!("{section}.{word}")
                } else {
                    word.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match error {
        ConfigError::DurationBelow {
            field,
            value,
            other,
            min,
        } => format!(
            "{} is {} ms but must be at least {} = {} ms",
            name(field),
            value.as_millis(),
            name(other),
            min.as_millis()
        ),
        ConfigError::ZeroDuration { field } => {
            format!("{} is 0 ms but must be greater than zero", name(field))
        }
        // Every other variant's message starts with the field's name.
        other => match field_of(other) {
            Some(field) if is_field(field) => format!("{section}.{other}"),
            _ => format!("{section}: {other}"),
        },
    }
}

impl NodeConfig {
    /// Checks every field against its documented bounds, as a node with encrypted datagrams
    /// would ([`crate::NodeBuilder::start`] checks the same with its real cipher).
    ///
    /// The protocols' `max_envelope_len` are not read: the node derives them from
    /// `max_datagram` (minus 36 bytes of label, nonce and tag), and the bounds that depend on
    /// them (`tree.max_content_len`, `state.max_value_len`) are checked against that.
    ///
    /// # Errors
    /// The first [`NodeConfigError`] found, naming the field by its full path and giving the
    /// allowed range.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        self.validate_with_envelope(self.max_datagram.saturating_sub(PACKET_OVERHEAD))
    }

    /// [`validate`](Self::validate) for envelopes of `envelope_len` bytes (the datagram
    /// minus what the cipher adds).
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn validate_with_envelope(&self, envelope_len: usize) -> Result<(), NodeConfigError> {
        if !(MIN_MAX_DATAGRAM..=MAX_DATAGRAM_LIMIT).contains(&self.max_datagram) {
            return Err(NodeConfigError::MaxDatagram {
                value: self.max_datagram,
            });
        }
        match self.fault.validate() {
            Ok(()) => {}
            Err(FaultConfigError::Loss(value)) => return Err(NodeConfigError::Loss { value }),
            Err(error) => return Err(NodeConfigError::Fault { error }),
        }
        if self.inbound_limit.rate > 0 && self.inbound_limit.burst == 0 {
            return Err(NodeConfigError::ZeroCapacity {
                field: "inbound_limit.burst",
            });
        }
        if self.inbound_limit.bulk_rate > 0 && self.inbound_limit.bulk_burst == 0 {
            return Err(NodeConfigError::ZeroCapacity {
                field: "inbound_limit.bulk_burst",
            });
        }
        if self.event_capacity == 0 {
            return Err(NodeConfigError::ZeroCapacity {
                field: "event_capacity",
            });
        }
        if self.set_queue_capacity == 0 {
            return Err(NodeConfigError::ZeroCapacity {
                field: "set_queue_capacity",
            });
        }
        let mut dissemination = self.dissemination.clone();
        dissemination.max_envelope_len = envelope_len;
        dissemination
            .validate()
            .map_err(NodeConfigError::section("dissemination"))?;
        let mut tree = self.tree.clone();
        tree.max_envelope_len = envelope_len;
        tree.validate().map_err(NodeConfigError::section("tree"))?;
        // The flow section first, so that its errors carry its own path.
        self.state
            .flow
            .validate()
            .map_err(NodeConfigError::section("state.flow"))?;
        let mut state = self.state.clone();
        state.max_envelope_len = envelope_len;
        state
            .validate()
            .map_err(NodeConfigError::section("state"))?;
        self.failure
            .validate()
            .map_err(NodeConfigError::section("failure"))?;
        self.replay
            .validate()
            .map_err(NodeConfigError::section("replay"))?;
        let mut blobs = self.blobs.clone();
        blobs.max_envelope_len = envelope_len;
        blobs
            .validate()
            .map_err(NodeConfigError::section("blobs"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::FaultInjection;

    fn message(config: NodeConfig) -> (String, String) {
        let err = config.validate().unwrap_err();
        (err.field(), err.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        NodeConfig::default().validate().unwrap();
    }

    #[test]
    fn each_section_names_the_full_path_and_range() {
        let ok = NodeConfig::default();
        let mut c = ok.clone();
        c.dissemination.fanout = 0;
        c.dissemination.acks_needed = 0;
        assert_eq!(
            message(c),
            (
                "dissemination.fanout".into(),
                "dissemination.fanout is 0 but must be at least 1".into()
            )
        );
        let mut c = ok.clone();
        c.dissemination.acks_needed = 4;
        assert_eq!(
            message(c).1,
            "dissemination.acks_needed is 4 but must be in 1..=3"
        );
        let mut c = ok.clone();
        c.dissemination.seen_ttl = Duration::from_secs(1);
        assert_eq!(
            message(c),
            (
                "dissemination.seen_ttl".into(),
                "dissemination.seen_ttl is 1000 ms but must be at least dissemination.cache_ttl = 30000 ms".into()
            )
        );
        let mut c = ok.clone();
        c.tree.notes_interval = Duration::ZERO;
        assert_eq!(
            message(c).1,
            "tree.notes_interval is 0 ms but must be greater than zero"
        );
        let mut c = ok.clone();
        c.tree.max_content_len = 2_000;
        assert_eq!(
            message(c).1,
            "tree.max_content_len is 2000 but must be in 1..=1162"
        );
        let mut c = ok.clone();
        c.state.flow.decrease_percent = 100;
        assert_eq!(
            message(c),
            (
                "state.flow.decrease_percent".into(),
                "state.flow.decrease_percent is 100 but must be in 1..=99".into()
            )
        );
        let mut c = ok.clone();
        c.state.rumor_share = 91;
        assert_eq!(
            message(c).1,
            "state.rumor_share is 91 but must be at most 90"
        );
        let mut c = ok.clone();
        c.failure.phi_threshold = f64::NAN;
        assert_eq!(
            message(c).1,
            "failure.phi_threshold must be a finite number greater than zero"
        );
        let mut c = ok.clone();
        c.failure.acceptable_pause = Duration::from_millis(150);
        assert_eq!(
            message(c),
            (
                "failure.acceptable_pause".into(),
                "failure.acceptable_pause is 150 ms but must be at least 2 × failure.check_interval = 200 ms".into()
            )
        );
        let mut c = ok.clone();
        c.failure.phi_threshold = 1.0;
        assert_eq!(
            message(c).1,
            "failure.phi_threshold · ln 10 · failure.min_mean is 1151 ms but must be at least failure.acceptable_pause = 5000 ms"
        );
    }

    #[test]
    fn node_level_fields() {
        let ok = NodeConfig::default();
        let c = NodeConfig {
            max_datagram: 100,
            ..ok.clone()
        };
        assert_eq!(
            message(c),
            (
                "max_datagram".into(),
                "max_datagram is 100 but must be in 128..=65507".into()
            )
        );
        let c = NodeConfig {
            fault: FaultInjection {
                loss: 1.5,
                ..FaultInjection::default()
            },
            ..ok.clone()
        };
        assert_eq!(
            message(c),
            (
                "fault.loss".into(),
                "fault.loss is 1.5 but must be in 0..=1".into()
            )
        );
        let c = NodeConfig {
            fault: FaultInjection {
                loss: f64::NAN,
                ..FaultInjection::default()
            },
            ..ok.clone()
        };
        assert_eq!(message(c).0, "fault.loss");
        let c = NodeConfig {
            fault: FaultInjection {
                delay: Some(crate::DelayRange::from_millis(80, 20)),
                ..FaultInjection::default()
            },
            ..ok.clone()
        };
        assert_eq!(
            message(c),
            (
                "fault.delay".into(),
                "fault.delay: injected delay range 80ms..=20ms is reversed".into()
            )
        );
        let c = NodeConfig {
            fault: FaultInjection {
                delay: Some(crate::DelayRange::from_millis(1, 2)),
                max_delayed: 0,
                ..FaultInjection::default()
            },
            ..ok.clone()
        };
        assert_eq!(message(c).0, "fault.max_delayed");
        let c = NodeConfig {
            event_capacity: 0,
            ..ok.clone()
        };
        assert_eq!(message(c).1, "event_capacity is 0 but must be at least 1");
        let c = NodeConfig {
            set_queue_capacity: 0,
            ..ok.clone()
        };
        assert_eq!(
            message(c).1,
            "set_queue_capacity is 0 but must be at least 1"
        );
        // The envelope follows max_datagram: a small datagram lowers the content limit.
        let c = NodeConfig {
            max_datagram: 512,
            ..ok
        };
        assert_eq!(
            message(c).1,
            "tree.max_content_len is 1024 but must be in 1..=274"
        );
    }
}
