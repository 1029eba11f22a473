//! CNI_ARGS: `K=V;K2=V2`, with `IgnoreUnknown` deciding whether unknown keys are an error.

use crate::error::Error;

/// Parsed CNI_ARGS, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

/// The key every plugin knows.
pub const IGNORE_UNKNOWN: &str = "IgnoreUnknown";

impl CniArgs {
    /// Parses `K=V;K2=V2`. An empty string is no arguments; empty segments are tolerated.
    /// A segment without exactly one `=` is an error (code 4) naming the segment.
    pub fn parse(raw: &str) -> Result<CniArgs, Error> {
        let mut pairs = Vec::new();
        for segment in raw.split(';').filter(|s| !s.is_empty()) {
            match segment.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.contains('=') => {
                    pairs.push((k.to_string(), v.to_string()))
                }
                _ => {
                    return Err(Error::invalid_env(format!(
                        "CNI_ARGS: invalid pair {segment:?}: expected KEY=VALUE"
                    )))
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The same arguments without `key`.
    pub fn without(&self, key: &str) -> CniArgs {
        CniArgs {
            pairs: self
                .pairs
                .iter()
                .filter(|(k, _)| k != key)
                .cloned()
                .collect(),
        }
    }

    /// The value of a key (the last one wins when repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// `IgnoreUnknown=1|true` (case-insensitive); any other value than 0/false/1/true is an error.
    pub fn ignore_unknown(&self) -> Result<bool, Error> {
        match self.get(IGNORE_UNKNOWN) {
            None => Ok(false),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => Err(Error::invalid_env(format!(
                    "CNI_ARGS: IgnoreUnknown={v:?} is not a boolean (1, 0, true, false)"
                ))),
            },
        }
    }

    /// Fails (code 4) on a key that is neither `known` nor `IgnoreUnknown`, unless unknown keys
    /// are to be ignored. Each plugin passes the keys it reads.
    pub fn check_known(&self, known: &[&str]) -> Result<(), Error> {
        if self.ignore_unknown()? {
            return Ok(());
        }
        let unknown: Vec<&str> = self
            .pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != IGNORE_UNKNOWN && !known.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(Error::invalid_env(format!(
            "CNI_ARGS: unknown key(s) {}; known: {}; add IgnoreUnknown=true to pass others",
            unknown.join(", "),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )))
    }

    /// The pod reference `namespace/name` from K8S_POD_NAMESPACE and K8S_POD_NAME, if both are set.
    pub fn pod_ref(&self) -> Option<String> {
        let ns = self.get("K8S_POD_NAMESPACE").filter(|s| !s.is_empty())?;
        let name = self.get("K8S_POD_NAME").filter(|s| !s.is_empty())?;
        Some(format!("{ns}/{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_tolerates_empty_segments() {
        let a = CniArgs::parse("IgnoreUnknown=1;IP=10.0.0.2/24;;").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.2/24"));
        assert_eq!(a.pairs().len(), 2);
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
    }

    #[test]
    fn rejects_a_pair_without_value_naming_it() {
        let e = CniArgs::parse("IP").unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("\"IP\""), "{}", e.msg);
        assert!(CniArgs::parse("A=b=c").is_err());
        assert!(CniArgs::parse("=b").is_err());
    }

    #[test]
    fn unknown_keys_fail_unless_ignore_unknown() {
        let a = CniArgs::parse("FOO=bar").unwrap();
        let e = a.check_known(&["IP"]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("FOO"), "{}", e.msg);
        for flag in ["1", "true", "TRUE"] {
            let a = CniArgs::parse(&format!("IgnoreUnknown={flag};FOO=bar")).unwrap();
            a.check_known(&["IP"]).unwrap();
        }
        let a = CniArgs::parse("IgnoreUnknown=0;FOO=bar").unwrap();
        assert!(a.check_known(&[]).is_err());
        let a = CniArgs::parse("IgnoreUnknown=maybe").unwrap();
        assert!(a.check_known(&[]).unwrap_err().msg.contains("maybe"));
    }

    #[test]
    fn pod_ref_needs_both_keys() {
        let a = CniArgs::parse("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p").unwrap();
        assert_eq!(a.pod_ref().as_deref(), Some("ns/p"));
        assert_eq!(CniArgs::parse("K8S_POD_NAME=p").unwrap().pod_ref(), None);
    }
}
