//! Reading a `transact` result array (RFC 7047 section 4.1.3).
//!
//! The reply is always a JSON-RPC success; failures are inside it. A failed operation has
//! `{"error":..,"details":..}` at its own position and `null` after it. A failure found at commit
//! time (an index made non-unique, a dangling reference) is an extra element after the last
//! operation. Either way the server applied nothing.

use serde_json::Value;

use crate::client::brief;
use crate::Error;

/// Returns the per-operation results of `ops`, or the first failure as [`Error::Op`].
pub(crate) fn check_results(
    ops: &[Value],
    result: Value,
    endpoint: &str,
) -> Result<Vec<Value>, Error> {
    let protocol = |what: String| Error::Protocol {
        endpoint: endpoint.to_string(),
        what,
    };
    let Value::Array(mut results) = result else {
        return Err(protocol(format!(
            "transact returned {} instead of an array",
            brief(&result)
        )));
    };
    if let Some(index) = results.iter().position(is_failure) {
        return Err(op_error(ops, index, &results[index]));
    }
    if results.len() < ops.len() {
        return Err(protocol(format!(
            "transact returned {} results for {} operations",
            results.len(),
            ops.len()
        )));
    }
    if let Some(bad) = results.iter().take(ops.len()).find(|r| !r.is_object()) {
        return Err(protocol(format!(
            "transact returned the result {}",
            brief(bad)
        )));
    }
    results.truncate(ops.len());
    Ok(results)
}

fn is_failure(result: &Value) -> bool {
    result.get("error").is_some_and(|e| !e.is_null())
}

fn op_error(ops: &[Value], index: usize, failure: &Value) -> Error {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let op = ops
        .get(index)
        .and_then(|op| op["op"].as_str())
        .unwrap_or("commit");
    Error::Op {
        index,
        op: op.to_string(),
        error: text(&failure["error"]),
        details: text(&failure["details"]),
    }
}

#[cfg(test)]
#[path = "transact_tests.rs"]
mod tests;
