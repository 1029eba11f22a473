use super::*;

#[test]
fn writes_sets_maps_and_references() {
    assert_eq!(set(vec![json!("a"), json!(1)]), json!(["set", ["a", 1]]));
    assert_eq!(set(Vec::new()), json!(["set", []]));
    assert_eq!(
        str_map(&[("k8s.ovn.org/network", "blue"), ("pod", "true")]),
        json!(["map", [["k8s.ovn.org/network", "blue"], ["pod", "true"]]])
    );
    assert_eq!(uuid("a-b"), json!(["uuid", "a-b"]));
    assert_eq!(named_uuid("p0"), json!(["named-uuid", "p0"]));
}

#[test]
fn reads_sets_written_either_way() {
    assert_eq!(
        as_set(&json!(["set", ["a", "b"]])),
        vec![json!("a"), json!("b")]
    );
    assert_eq!(as_set(&json!("a")), vec![json!("a")]);
    let one_ref = json!(["uuid", "0af044fa-94f0-473c-a962-9577cbfc8378"]);
    assert_eq!(as_set(&one_ref), vec![one_ref.clone()]);
    assert_eq!(as_set(&json!(["set", []])), Vec::<Value>::new());
    assert_eq!(as_set(&Value::Null), Vec::<Value>::new());
    assert_eq!(
        as_strings(&json!(["set", ["unknown", "0a:58:0a:00:00:05 10.0.0.5"]])).len(),
        2
    );
    assert_eq!(as_strings(&json!("unknown")), vec!["unknown".to_string()]);
    assert_eq!(as_strings(&json!(["set", []])), Vec::<String>::new());
}

#[test]
fn reads_string_maps_and_skips_what_is_not_one() {
    let map = as_str_map(&json!(["map", [["a", "1"], ["b", "2"], ["c", 3]]]));
    assert_eq!(map.len(), 2);
    assert_eq!(map["a"], "1");
    assert_eq!(map["b"], "2");
    assert!(as_str_map(&json!(["map", []])).is_empty());
    assert!(as_str_map(&json!(["set", []])).is_empty());
    assert!(as_str_map(&json!("x")).is_empty());
}

#[test]
fn reads_uuids_bare_or_in_a_one_element_set() {
    let u = "0af044fa-94f0-473c-a962-9577cbfc8378";
    assert_eq!(as_uuid(&json!(["uuid", u])).as_deref(), Some(u));
    assert_eq!(as_uuid(&json!(["set", [["uuid", u]]])).as_deref(), Some(u));
    assert_eq!(as_uuid(&json!(["set", []])), None);
    assert_eq!(as_uuid(&json!(["named-uuid", "p"])), None);
    assert_eq!(as_uuid(&json!(u)), None);
}
