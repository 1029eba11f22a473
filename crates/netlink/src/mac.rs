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

    /// The IPv6 link-local address the kernel derives from this MAC (modified EUI-64, RFC 4291
    /// appendix A: the U/L bit flipped, `ff:fe` in the middle).
    pub fn link_local(&self) -> std::net::Ipv6Addr {
        let b = self.0;
        let mut o = [0u8; 16];
        o[0] = 0xfe;
        o[1] = 0x80;
        o[8..].copy_from_slice(&[b[0] ^ 2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]]);
        std::net::Ipv6Addr::from(o)
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
    #[test]
    fn the_link_local_address_is_the_kernels_eui_64() {
        // As `ip -6 addr` shows it for an interface with this MAC.
        let mac: super::Mac = "0a:58:1a:b5:a0:87".parse().unwrap();
        assert_eq!(mac.link_local().to_string(), "fe80::858:1aff:feb5:a087");
        let mac: super::Mac = "22:1a:3c:7b:c1:8b".parse().unwrap();
        assert_eq!(mac.link_local().to_string(), "fe80::201a:3cff:fe7b:c18b");
    }

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
