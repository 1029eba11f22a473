//! Ethernet addresses as users write them (`0a:58:0a:01:00:05`).

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// From the bytes of a netlink attribute; `None` unless exactly six.
    pub fn from_bytes(b: &[u8]) -> Option<Mac> {
        <[u8; 6]>::try_from(b).ok().map(Mac)
    }

    /// The multicast bit (I/G) of the first octet: such an address cannot be an interface's.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// All zeros.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for Mac {
    type Err = String;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address (six hex octets)"));
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(format!("{s:?} is not a MAC address (six hex octets)"));
            }
            *o = u8::from_str_radix(p, 16)
                .map_err(|_| format!("{s:?} is not a MAC address (six hex octets)"))?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_prints_lowercase_colons() {
        let m: Mac = "0A-58-0a-01-00-05".parse().unwrap();
        assert_eq!(m.to_string(), "0a:58:0a:01:00:05");
        assert!(!m.is_multicast());
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
    }

    #[test]
    fn rejects_wrong_lengths_and_digits() {
        for bad in [
            "",
            "0a:58:0a:01:00",
            "0a:58:0a:01:00:05:06",
            "0a:58:0a:01:00:zz",
            "a:58:0a:01:00:05",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
