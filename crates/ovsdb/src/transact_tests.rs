use serde_json::json;

use super::*;
use crate::ops;

fn two_ops() -> Vec<Value> {
    vec![
        ops::insert("Logical_Switch", json!({"name": "s3"}), None),
        ops::update(
            "Logical_Switch",
            json!([ops::cond("name", "==", json!("s1"))]),
            json!({"nope": 1}),
        ),
    ]
}

#[test]
fn returns_one_result_per_operation_on_success() {
    let result = json!([{"uuid": ["uuid", "465884d8-75e8-491d-b47b-babbe7fd147a"]}, {"count": 1}]);
    let results = check_results(&two_ops(), result, "unix:/x").unwrap();
    assert_eq!(results[1], json!({"count": 1}));
    assert_eq!(results.len(), 2);
}

#[test]
fn reports_the_failed_operation_in_the_middle() {
    // Verbatim from ovsdb-server 3.1: earlier results are present but were not applied.
    let result = json!([
        {"uuid": ["uuid", "465884d8-75e8-491d-b47b-babbe7fd147a"]},
        {"details": "No column nope in table Logical_Switch.", "error": "unknown column",
         "syntax": "{\"nope\":1}"}
    ]);
    let err = check_results(&two_ops(), result, "unix:/x").unwrap_err();
    match &err {
        Error::Op {
            index,
            op,
            error,
            details,
        } => {
            assert_eq!(
                (*index, op.as_str(), error.as_str()),
                (1, "update", "unknown column")
            );
            assert_eq!(details, "No column nope in table Logical_Switch.");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_wait_failed() && !err.is_unavailable());
}

#[test]
fn reports_a_commit_failure_after_the_last_operation() {
    let result = json!([{"uuid": ["uuid", "9db67a77-55cb-4895-9c2c-0451924235d9"]}, {"count": 1},
        {"details": "Transaction causes multiple rows in \"Logical_Switch_Port\" table to have identical values (p1) for index on column \"name\".",
         "error": "constraint violation"}]);
    match check_results(&two_ops(), result, "unix:/x").unwrap_err() {
        Error::Op {
            index: 2,
            op,
            error,
            details,
        } => {
            assert_eq!(
                (op.as_str(), error.as_str()),
                ("commit", "constraint violation")
            );
            assert!(details.contains("identical values (p1)"), "{details}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_wait_is_recognised_as_a_lost_race() {
    let ops = vec![
        ops::wait_eq(
            "Logical_Switch",
            json!([]),
            &["name"],
            json!([{"name": "a"}]),
        ),
        ops::delete("Logical_Switch", json!([])),
    ];
    let result = json!([{"details": "\"where\" clause test failed", "error": "timed out"}, null]);
    let err = check_results(&ops, result, "unix:/x").unwrap_err();
    assert!(err.is_wait_failed(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "OVSDB transaction failed at operation 0 (wait): timed out: \"where\" clause test failed"
    );
}

#[test]
fn a_malformed_result_array_is_a_protocol_error() {
    for result in [
        json!({"rows": []}),
        json!([{"count": 1}]),
        json!([{"count": 1}, null]),
    ] {
        let err = check_results(&two_ops(), result.clone(), "unix:/x").unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{result}: {err:?}");
    }
}
