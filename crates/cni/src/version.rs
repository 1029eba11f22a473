//! CNI specification versions and the gates between them.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A CNI specification version this suite speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.1.0: `ip4`/`ip6` results.
    V0_1_0,
    /// 0.2.0: `ip4`/`ip6` results.
    V0_2_0,
    /// 0.3.0: `interfaces`/`ips` results with `version` per IP.
    V0_3_0,
    /// 0.3.1: as 0.3.0.
    V0_3_1,
    /// 0.4.0: adds CHECK.
    V0_4_0,
    /// 1.0.0: drops `ips[].version`.
    V1_0_0,
    /// 1.1.0: adds STATUS, GC and interface/route attributes.
    V1_1_0,
}

impl Version {
    /// Every version, oldest first: what VERSION reports as supported.
    pub const ALL: [Version; 7] = [
        Version::V0_1_0,
        Version::V0_2_0,
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];

    /// The newest version, used when nothing else says which one to speak.
    pub const LATEST: Version = Version::V1_1_0;

    /// The version string as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_1_0 => "0.1.0",
            Version::V0_2_0 => "0.2.0",
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Results in the `ip4`/`ip6` shape (0.1.0 and 0.2.0).
    pub fn is_legacy(self) -> bool {
        self <= Version::V0_2_0
    }

    /// `ips[].version` is carried (0.3.0 to 0.4.0).
    pub fn has_ip_version(self) -> bool {
        (Version::V0_3_0..=Version::V0_4_0).contains(&self)
    }

    /// Error codes 4 to 7 exist from 1.0.0.
    pub fn has_extended_error_codes(self) -> bool {
        self >= Version::V1_0_0
    }

    /// Parses the `cniVersion` of a config; a missing or empty one means 0.1.0, as in libcni.
    pub fn from_config_value(value: Option<&str>) -> Result<Version, Error> {
        match value {
            None | Some("") => Ok(Version::V0_1_0),
            Some(s) => s.parse(),
        }
    }

    /// The comma-separated list of supported versions, for error details.
    pub fn supported_list() -> String {
        Self::ALL.map(Version::as_str).join(", ")
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Version {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                Error::incompatible_version(format!(
                    "cniVersion {s:?} is not supported; supported versions: {}",
                    Self::supported_list()
                ))
            })
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_version_and_round_trips() {
        for v in Version::ALL {
            assert_eq!(v.as_str().parse::<Version>().unwrap(), v);
        }
    }

    #[test]
    fn missing_or_empty_config_version_means_0_1_0() {
        assert_eq!(Version::from_config_value(None).unwrap(), Version::V0_1_0);
        assert_eq!(
            Version::from_config_value(Some("")).unwrap(),
            Version::V0_1_0
        );
    }

    #[test]
    fn unknown_version_is_code_1_naming_the_value() {
        let err = "0.9.9".parse::<Version>().unwrap_err();
        assert_eq!(err.code, crate::error::code::INCOMPATIBLE_VERSION);
        assert!(err.msg.contains("0.9.9"), "{}", err.msg);
    }

    #[test]
    fn versions_are_ordered() {
        assert!(Version::V0_3_1 < Version::V0_4_0);
        assert!(Version::V0_2_0.is_legacy() && !Version::V0_3_0.is_legacy());
        assert!(Version::V0_4_0.has_ip_version() && !Version::V1_0_0.has_ip_version());
    }
}
