use serde_json::json;

use super::*;
use crate::value;

#[test]
fn builds_the_rfc_7047_operation_objects() {
    let by_name = json!([cond("name", "==", json!("sw0"))]);
    assert_eq!(
        insert("Logical_Switch", json!({"name": "sw0"}), Some("sw")),
        json!({"op": "insert", "table": "Logical_Switch", "row": {"name": "sw0"}, "uuid-name": "sw"})
    );
    assert_eq!(
        insert("Logical_Switch", json!({}), None),
        json!({"op": "insert", "table": "Logical_Switch", "row": {}})
    );
    assert_eq!(
        select("Logical_Switch", by_name.clone(), Some(&["name", "ports"])),
        json!({"op": "select", "table": "Logical_Switch", "where": [["name", "==", "sw0"]],
               "columns": ["name", "ports"]})
    );
    assert_eq!(
        select("Logical_Switch", json!([]), None),
        json!({"op": "select", "table": "Logical_Switch", "where": []})
    );
    assert_eq!(
        update(
            "Logical_Switch",
            by_name.clone(),
            json!({"other_config": value::str_map(&[])})
        ),
        json!({"op": "update", "table": "Logical_Switch", "where": [["name", "==", "sw0"]],
               "row": {"other_config": ["map", []]}})
    );
    let add_port = mutation("ports", "insert", value::set(vec![value::named_uuid("p")]));
    assert_eq!(
        mutate("Logical_Switch", by_name.clone(), json!([add_port])),
        json!({"op": "mutate", "table": "Logical_Switch", "where": [["name", "==", "sw0"]],
               "mutations": [["ports", "insert", ["set", [["named-uuid", "p"]]]]]})
    );
    assert_eq!(
        delete("Logical_Switch", by_name.clone()),
        json!({"op": "delete", "table": "Logical_Switch", "where": [["name", "==", "sw0"]]})
    );
    assert_eq!(
        comment("multihome: add"),
        json!({"op": "comment", "comment": "multihome: add"})
    );
}

#[test]
fn wait_eq_is_an_immediate_wait_until_equal() {
    let uuid = "0af044fa-94f0-473c-a962-9577cbfc8378";
    assert_eq!(
        wait_eq(
            "Logical_Switch",
            json!([cond("_uuid", "==", value::uuid(uuid))]),
            &["external_ids"],
            json!([{"external_ids": value::str_map(&[("a", "b")])}]),
        ),
        json!({"op": "wait", "table": "Logical_Switch", "timeout": 0,
               "where": [["_uuid", "==", ["uuid", uuid]]], "columns": ["external_ids"],
               "until": "==", "rows": [{"external_ids": ["map", [["a", "b"]]]}]})
    );
}
