//! Builders of `transact` operations (RFC 7047 section 5.2), as JSON values.
//!
//! `where_` is an array of conditions (see [`cond`]); `row` an object of column to OVSDB value
//! (see [`crate::value`]).

use serde_json::{json, Map, Value};

/// `insert` of `row` into `table`; `uuid_name` lets later operations of the same transaction
/// refer to the new row as [`crate::value::named_uuid`]. Result: `{"uuid":["uuid",..]}`.
pub fn insert(table: &str, row: Value, uuid_name: Option<&str>) -> Value {
    let mut op = operation("insert", table);
    op.insert("row".into(), row);
    if let Some(name) = uuid_name {
        op.insert("uuid-name".into(), json!(name));
    }
    Value::Object(op)
}

/// `select` of the rows of `table` matching `where_`, all columns or only `columns`.
/// Result: `{"rows":[..]}`.
pub fn select(table: &str, where_: Value, columns: Option<&[&str]>) -> Value {
    let mut op = operation("select", table);
    op.insert("where".into(), where_);
    if let Some(columns) = columns {
        op.insert("columns".into(), json!(columns));
    }
    Value::Object(op)
}

/// `update` of the columns in `row` of the rows matching `where_`. Result: `{"count":n}`.
pub fn update(table: &str, where_: Value, row: Value) -> Value {
    let mut op = operation("update", table);
    op.insert("where".into(), where_);
    op.insert("row".into(), row);
    Value::Object(op)
}

/// `mutate` of the rows matching `where_` with `mutations` (an array of [`mutation`]).
/// Result: `{"count":n}`.
pub fn mutate(table: &str, where_: Value, mutations: Value) -> Value {
    let mut op = operation("mutate", table);
    op.insert("where".into(), where_);
    op.insert("mutations".into(), mutations);
    Value::Object(op)
}

/// `delete` of the rows matching `where_`. Result: `{"count":n}`.
pub fn delete(table: &str, where_: Value) -> Value {
    let mut op = operation("delete", table);
    op.insert("where".into(), where_);
    Value::Object(op)
}

/// `wait` with timeout 0: the transaction fails (with `"timed out"`, see
/// [`crate::Error::is_wait_failed`]) unless the rows matching `where_`, reduced to `columns`,
/// equal `rows` (an array of objects) now. Put it first to apply the rest only if nobody changed
/// what was read: optimistic concurrency.
pub fn wait_eq(table: &str, where_: Value, columns: &[&str], rows: Value) -> Value {
    let mut op = operation("wait", table);
    op.insert("timeout".into(), json!(0));
    op.insert("where".into(), where_);
    op.insert("columns".into(), json!(columns));
    op.insert("until".into(), json!("=="));
    op.insert("rows".into(), rows);
    Value::Object(op)
}

/// `comment`: text the server writes to its log with the transaction.
pub fn comment(text: &str) -> Value {
    json!({"op": "comment", "comment": text})
}

/// A condition for `where_`: `[column, function, value]`, e.g. `["name","==","sw0"]`
/// (functions: `==`, `!=`, `<`, `<=`, `>`, `>=`, `includes`, `excludes`).
pub fn cond(column: &str, function: &str, value: Value) -> Value {
    json!([column, function, value])
}

/// A mutation for [`mutate`]: `[column, mutator, value]`, e.g.
/// `["ports","insert",["set",[["named-uuid","p"]]]]` (mutators: `+=`, `-=`, `*=`, `/=`, `%=`,
/// `insert`, `delete`).
pub fn mutation(column: &str, mutator: &str, value: Value) -> Value {
    json!([column, mutator, value])
}

fn operation(op: &str, table: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("op".into(), json!(op));
    map.insert("table".into(), json!(table));
    map
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
