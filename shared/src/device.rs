//! The device a session was created on, as a "where you're logged in" page shows
//! it: the browser's user agent, the client's IP address and a label the app
//! chooses. Each part is optional and bounded; none is a secret.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Longest user agent kept, in characters (browsers send 100 to 300).
pub const MAX_USER_AGENT: usize = 512;
/// Longest label, in characters.
pub const MAX_LABEL: usize = 100;

/// A session's device. Build one with [`Device::new`], which checks every part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The browser's `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's IP address (IPv4 or IPv6), in its canonical text form (an
    /// IPv4-mapped IPv6 address as the IPv4 one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// A name for the device the app or its user chose ("Work laptop").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Device {
    /// A device from a request's parts: texts of at most [`MAX_USER_AGENT`] and
    /// [`MAX_LABEL`] characters without control characters, and an IP address,
    /// kept in canonical form (`2001:DB8::1` becomes `2001:db8::1`).
    pub fn new(user_agent: Option<String>, ip: Option<String>, label: Option<String>) -> Result<Self, ValidationError> {
        let text = |value: Option<String>, field: &'static str, max: usize| match value {
            Some(v) if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) => {
                Err(ValidationError::Device { field, max })
            }
            other => Ok(other),
        };
        let ip = match ip {
            None => None,
            Some(raw) => Some(
                raw.parse::<IpAddr>()
                    .map_err(|_| ValidationError::DeviceIp)?
                    .to_canonical()
                    .to_string(),
            ),
        };
        Ok(Self {
            user_agent: text(user_agent, "user_agent", MAX_USER_AGENT)?,
            ip,
            label: text(label, "label", MAX_LABEL)?,
        })
    }

    /// Whether no part is set.
    pub fn is_empty(&self) -> bool {
        self.user_agent.is_none() && self.ip.is_none() && self.label.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_bounded_and_addresses_canonical() {
        let device = Device::new(
            Some("Mozilla/5.0".into()),
            Some("2001:DB8::1".into()),
            Some("Work laptop".into()),
        )
        .unwrap();
        assert_eq!(device.ip.as_deref(), Some("2001:db8::1"));
        let mapped = Device::new(None, Some("::ffff:203.0.113.7".into()), None).unwrap();
        assert_eq!(mapped.ip.as_deref(), Some("203.0.113.7"), "one client, one form");
        assert_eq!(
            Device::new(Some("x".repeat(MAX_USER_AGENT + 1)), None, None),
            Err(ValidationError::Device {
                field: "user_agent",
                max: MAX_USER_AGENT
            })
        );
        assert!(Device::new(None, None, Some("tab\there".into())).is_err());
        assert!(Device::new(None, None, Some(String::new())).is_err());
        assert_eq!(
            Device::new(None, Some("300.1.1.1".into()), None),
            Err(ValidationError::DeviceIp)
        );
        assert!(
            Device::new(Some("é".repeat(MAX_USER_AGENT)), None, None).is_ok(),
            "characters, not bytes"
        );
    }
}
