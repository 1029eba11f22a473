//! The messages of etcd v3's JSON gateway (grpc-gateway over the gRPC API, served by every
//! member on its client URLs): what the etcd store sends and reads back.
//!
//! The gateway speaks protobuf's JSON mapping: keys and values are base64, 64-bit integers are
//! JSON strings (numbers are accepted too), enums are their names, field names are the proto
//! names (`create_revision`; the camelCase spellings are accepted as well), and a field at its
//! default value (false, 0, empty) is **omitted** from answers: `succeeded` is absent when a
//! transaction's comparison failed, `kvs` when a range is empty, `value` when it is empty.

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// POST paths of the gateway (etcd 3.4 serves them under `/v3/`).
pub const RANGE: &str = "/v3/kv/range";
/// See [`RANGE`].
pub const TXN: &str = "/v3/kv/txn";
/// See [`RANGE`].
pub const PUT: &str = "/v3/kv/put";
/// See [`RANGE`].
pub const DELETE_RANGE: &str = "/v3/kv/deleterange";
/// See [`RANGE`].
pub const AUTHENTICATE: &str = "/v3/auth/authenticate";

/// Bytes as base64 (standard alphabet, padded); absent or null reads as empty.
mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("invalid base64 {s:?}: {e}"))),
        }
    }
}

/// An int64: written as a JSON string, read from a string or a number.
mod int64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Option::<Either>::deserialize(d)? {
            None => Ok(0),
            Some(Either::Number(n)) => Ok(n),
            Some(Either::Text(s)) => s
                .parse()
                .map_err(|e| serde::de::Error::custom(format!("invalid int64 {s:?}: {e}"))),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The end of the range that holds every key starting with `prefix` (etcd's rule: the prefix
/// with its last byte below 0xff incremented and what follows dropped; `"\0"`, every key from
/// `prefix` on, when there is no such byte).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `RangeRequest`: one key, or the keys in `[key, range_end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RangeRequest {
    /// The key, or the first key of the range.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The end of the range (exclusive); empty: only `key`.
    #[serde(with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    /// At most this many keys (0: no limit).
    #[serde(with = "int64", skip_serializing_if = "is_zero")]
    pub limit: i64,
    /// Answer from the member's own copy, without a round of consensus.
    #[serde(skip_serializing_if = "is_false")]
    pub serializable: bool,
    /// Keys without their values.
    #[serde(skip_serializing_if = "is_false")]
    pub keys_only: bool,
}

impl RangeRequest {
    /// The key `key` alone.
    pub fn key(key: impl Into<Vec<u8>>) -> RangeRequest {
        RangeRequest {
            key: key.into(),
            ..RangeRequest::default()
        }
    }

    /// Every key that starts with the key.
    pub fn with_prefix(mut self) -> RangeRequest {
        self.range_end = prefix_end(&self.key);
        self
    }

    /// The keys from the key up to `end` (exclusive).
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> RangeRequest {
        self.range_end = end.into();
        self
    }

    /// At most `n` keys.
    pub fn with_limit(mut self, n: i64) -> RangeRequest {
        self.limit = n;
        self
    }

    /// Keys only.
    pub fn with_keys_only(mut self) -> RangeRequest {
        self.keys_only = true;
        self
    }

    /// Served from the member's own copy.
    pub fn with_serializable(mut self) -> RangeRequest {
        self.serializable = true;
        self
    }
}

/// `PutRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutRequest {
    /// The key.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "b64")]
    pub value: Vec<u8>,
}

/// `DeleteRangeRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteRangeRequest {
    /// The key, or the first key of the range.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The end of the range (exclusive); empty: only `key`.
    #[serde(with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
}

/// One operation of a transaction (`RequestOp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TxnOp {
    /// A read.
    #[serde(rename = "request_range")]
    Get(RangeRequest),
    /// A write.
    #[serde(rename = "request_put")]
    Put(PutRequest),
    /// A delete.
    #[serde(rename = "request_delete_range")]
    Delete(DeleteRangeRequest),
}

impl TxnOp {
    /// Writes `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> TxnOp {
        TxnOp::Put(PutRequest {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Deletes `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> TxnOp {
        TxnOp::Delete(DeleteRangeRequest {
            key: key.into(),
            range_end: Vec::new(),
        })
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(prefix: impl Into<Vec<u8>>) -> TxnOp {
        let key = prefix.into();
        TxnOp::Delete(DeleteRangeRequest {
            range_end: prefix_end(&key),
            key,
        })
    }

    /// Reads what `range` names.
    pub fn get(range: RangeRequest) -> TxnOp {
        TxnOp::Get(range)
    }
}

/// A transaction's condition (`Compare`): a revision of `key` equals a number (0 for the
/// creation revision: the key does not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compare {
    /// The key compared.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// Always `EQUAL` here.
    pub result: &'static str,
    /// `CREATE` or `MOD`.
    pub target: &'static str,
    /// With `CREATE`.
    #[serde(serialize_with = "opt_int64", skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<i64>,
    /// With `MOD`.
    #[serde(serialize_with = "opt_int64", skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<i64>,
}

fn opt_int64<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(n) => s.serialize_str(&n.to_string()),
        None => s.serialize_none(),
    }
}

impl Compare {
    /// The key's creation revision is `rev` (0: the key does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>, rev: i64) -> Compare {
        Compare {
            key: key.into(),
            result: "EQUAL",
            target: "CREATE",
            create_revision: Some(rev),
            mod_revision: None,
        }
    }

    /// The key's last modification is revision `rev`.
    pub fn mod_revision(key: impl Into<Vec<u8>>, rev: i64) -> Compare {
        Compare {
            key: key.into(),
            result: "EQUAL",
            target: "MOD",
            create_revision: None,
            mod_revision: Some(rev),
        }
    }
}

/// `TxnRequest`: `success` when every comparison holds, `failure` otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Txn {
    /// The conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<Compare>,
    /// What runs when they hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub success: Vec<TxnOp>,
    /// What runs when one does not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Its conditions.
    pub fn when(mut self, compare: impl IntoIterator<Item = Compare>) -> Txn {
        self.compare.extend(compare);
        self
    }

    /// What runs when the conditions hold.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.success.extend(ops);
        self
    }

    /// What runs when one does not.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.failure.extend(ops);
        self
    }
}

/// `AuthenticateRequest`.
#[derive(Serialize)]
pub struct AuthenticateRequest<'a> {
    /// The user.
    pub name: &'a str,
    /// The password.
    pub password: &'a str,
}

impl std::fmt::Debug for AuthenticateRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `AuthenticateResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthenticateResponse {
    /// What goes in the `Authorization` header of later requests.
    pub token: String,
}

/// `ResponseHeader`: the store's revision when the request was served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ResponseHeader {
    /// The revision.
    #[serde(with = "int64")]
    pub revision: i64,
}

/// `mvccpb.KeyValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The value (empty with `keys_only`).
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    /// Revision of the key's creation.
    #[serde(with = "int64", alias = "createRevision")]
    pub create_revision: i64,
    /// Revision of its last modification.
    #[serde(with = "int64", alias = "modRevision")]
    pub mod_revision: i64,
}

impl KeyValue {
    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Revision of its last modification.
    pub fn mod_revision(&self) -> i64 {
        self.mod_revision
    }
}

/// `RangeResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RangeResponse {
    /// When it was served.
    pub header: ResponseHeader,
    /// The keys found (absent from the JSON when none).
    pub kvs: Vec<KeyValue>,
    /// More keys than `limit` matched.
    pub more: bool,
    /// How many keys matched.
    #[serde(with = "int64")]
    pub count: i64,
}

/// `ResponseOp`: the answer of one operation of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ResponseOp {
    /// The answer of a read.
    #[serde(alias = "responseRange")]
    pub response_range: Option<RangeResponse>,
    /// Present for a write (its content is not used).
    #[serde(alias = "responsePut")]
    pub response_put: Option<serde_json::Value>,
    /// Present for a delete (its content is not used).
    #[serde(alias = "responseDeleteRange")]
    pub response_delete_range: Option<serde_json::Value>,
}

/// `TxnResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TxnResponse {
    /// When it was served.
    pub header: ResponseHeader,
    /// The conditions held (absent from the JSON when they did not).
    pub succeeded: bool,
    /// One answer per operation run.
    pub responses: Vec<ResponseOp>,
}

impl TxnResponse {
    /// Whether the conditions held.
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// The keys the `i`th operation read (empty when it was not a read or read nothing).
    pub fn range_kvs(&self, i: usize) -> &[KeyValue] {
        self.responses
            .get(i)
            .and_then(|r| r.response_range.as_ref())
            .map_or(&[], |r| &r.kvs)
    }
}

/// The body of an error answer: `{"error": ..., "message": ..., "code": <gRPC code>}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// The gRPC status code (14 unavailable, 16 unauthenticated, ...).
    pub code: i32,
    /// What went wrong.
    pub message: String,
    /// The same, in older gateways.
    pub error: String,
}
