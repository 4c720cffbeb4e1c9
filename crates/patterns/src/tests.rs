//! Table tests built from the examples of AWS's EventBridge user guide ("Amazon
//! EventBridge event patterns", "Content filtering in Amazon EventBridge event
//! patterns", "Comparison operators for use in event patterns").

use super::*;
use serde_json::json;

/// The guide's sample event: an EC2 instance state-change notification.
fn ec2_event() -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "111122223333",
        "time": "2017-12-22T18:43:48Z",
        "region": "us-west-1",
        "resources": [
            "arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"
        ],
        "detail": {
            "instance-id": "i-1234567890abcdef0",
            "state": "terminated"
        }
    })
}

/// (pattern, event, expected) rows: each is asserted both ways by [`check`].
fn check(rows: &[(Value, Value, bool)]) {
    for (i, (pattern, event, want)) in rows.iter().enumerate() {
        let p = Pattern::from_value(pattern)
            .unwrap_or_else(|e| panic!("row {i}: {pattern} did not parse: {e}"));
        assert_eq!(
            p.matches(event),
            *want,
            "row {i}: pattern {pattern} against {event}"
        );
    }
}

#[test]
fn exact_values_and_nested_fields() {
    let ev = ec2_event();
    check(&[
        // The guide's first pattern: source, detail-type and a nested detail field.
        (
            json!({"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"], "detail": {"state": ["terminated"]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"source": ["aws.ec2"], "detail": {"state": ["running"]}}),
            ev.clone(),
            false,
        ),
        // Values listed for a field are alternatives.
        (
            json!({"detail": {"state": ["running", "terminated"]}}),
            ev.clone(),
            true,
        ),
        // Matching is case-sensitive and exact.
        (json!({"source": ["AWS.EC2"]}), ev.clone(), false),
        (json!({"source": ["aws.ec"]}), ev.clone(), false),
        // A field the event does not have: no match.
        (json!({"detail": {"reason": ["x"]}}), ev.clone(), false),
        // A nested pattern where the event has a string: no match.
        (json!({"source": {"inner": ["aws.ec2"]}}), ev.clone(), false),
        // Every field must match (AND).
        (
            json!({"source": ["aws.ec2"], "region": ["eu-west-1"]}),
            ev.clone(),
            false,
        ),
    ]);
}

#[test]
fn null_empty_numbers_and_booleans() {
    // The guide's "Matching null values and empty strings" event.
    let ev = json!({
        "version": "0",
        "detail-type": "EC2 Instance State-change Notification",
        "detail": {
            "eventVersion": "",
            "responseElements": null,
            "c-count": 5,
            "d-count": 3.0,
            "enabled": true
        }
    });
    check(&[
        (
            json!({"detail": {"responseElements": [null]}}),
            ev.clone(),
            true,
        ),
        (json!({"detail": {"eventVersion": [""]}}), ev.clone(), true),
        (
            json!({"detail": {"eventVersion": [null]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"responseElements": [""]}}),
            ev.clone(),
            false,
        ),
        (json!({"detail": {"c-count": [5]}}), ev.clone(), true),
        // Numbers compare as numbers, not as text.
        (json!({"detail": {"c-count": [5.0]}}), ev.clone(), true),
        (json!({"detail": {"d-count": [3]}}), ev.clone(), true),
        (json!({"detail": {"c-count": ["5"]}}), ev.clone(), false),
        (json!({"detail": {"enabled": [true]}}), ev.clone(), true),
        (json!({"detail": {"enabled": [false]}}), ev.clone(), false),
    ]);
}

#[test]
fn arrays_in_the_event_match_any_element() {
    // The guide: "If the value in the event is an array, then the event pattern
    // matches if the intersection of the event pattern array and the event array is
    // non-empty."
    let ev = json!({
        "resources": [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"
        ]
    });
    check(&[
        (
            json!({"resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:000000000000:instance/i-98765432"
            ]}),
            ev.clone(),
            true,
        ),
        (
            json!({"resources": ["arn:aws:ec2:us-east-1:000000000000:instance/i-98765432"]}),
            ev.clone(),
            false,
        ),
        (
            json!({"resources": [{"prefix": "arn:aws:ec2:us-east-1:4444"}]}),
            ev.clone(),
            true,
        ),
        // Arrays of objects: a nested pattern matches when one element does.
        (
            json!({"Records": {"eventName": ["ObjectCreated:Put"]}}),
            json!({"Records": [{"eventName": "ObjectRemoved:Delete"}, {"eventName": "ObjectCreated:Put"}]}),
            true,
        ),
        (
            json!({"Records": {"eventName": ["ObjectCreated:Copy"]}}),
            json!({"Records": [{"eventName": "ObjectRemoved:Delete"}, {"eventName": "ObjectCreated:Put"}]}),
            false,
        ),
    ]);
}

#[test]
fn prefix() {
    // The guide: "time" starting with "2017-10-02".
    let ev = json!({"time": "2017-10-02T18:43:48Z", "region": "us-east-1", "n": 20171002});
    check(&[
        (
            json!({"time": [{"prefix": "2017-10-02"}]}),
            ev.clone(),
            true,
        ),
        (
            json!({"time": [{"prefix": "2017-10-03"}]}),
            ev.clone(),
            false,
        ),
        // Comparison operators table: "Region is in the US."
        (json!({"region": [{"prefix": "us-"}]}), ev.clone(), true),
        (json!({"region": [{"prefix": "eu-"}]}), ev.clone(), false),
        (json!({"region": [{"prefix": ""}]}), ev.clone(), true),
        // Prefix is for strings only.
        (json!({"n": [{"prefix": "2017"}]}), ev.clone(), false),
        // An exact value and a prefix as alternatives.
        (
            json!({"region": ["eu-west-1", {"prefix": "us-"}]}),
            ev.clone(),
            true,
        ),
    ]);
}

#[test]
fn exists() {
    // The guide: exists matching "only works on leaf nodes" and a missing field
    // matches `"exists": false`.
    let ev = json!({
        "detail": {"c-count": 5, "d-count": null, "nested": {"x": 1}}
    });
    check(&[
        (
            json!({"detail": {"c-count": [{"exists": true}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"c-count": [{"exists": false}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"e-count": [{"exists": false}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"e-count": [{"exists": true}]}}),
            ev.clone(),
            false,
        ),
        // A null value is present.
        (
            json!({"detail": {"d-count": [{"exists": true}]}}),
            ev.clone(),
            true,
        ),
        // Not on an object node.
        (
            json!({"detail": {"nested": [{"exists": true}]}}),
            ev.clone(),
            false,
        ),
        // A whole missing branch: exists false still holds for its leaves.
        (
            json!({"other": {"leaf": [{"exists": false}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"other": {"leaf": [{"exists": true}]}}),
            ev.clone(),
            false,
        ),
        // Combined with AND.
        (
            json!({"detail": {"c-count": [{"exists": true}], "e-count": [{"exists": false}]}}),
            ev.clone(),
            true,
        ),
    ]);
}

#[test]
fn anything_but() {
    let ev = json!({
        "detail": {"state": "running", "x-limit": 123, "tags": ["a", "b"]}
    });
    check(&[
        // Comparison operators table: "State is any value besides initializing."
        (
            json!({"detail": {"state": [{"anything-but": "initializing"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"state": [{"anything-but": "running"}]}}),
            ev.clone(),
            false,
        ),
        // The guide's list form.
        (
            json!({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"state": [{"anything-but": ["stopped", "running"]}]}}),
            ev.clone(),
            false,
        ),
        // Numbers.
        (
            json!({"detail": {"x-limit": [{"anything-but": 123}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}}),
            ev.clone(),
            true,
        ),
        // A missing field is not "anything but": only exists:false matches absence.
        (
            json!({"detail": {"missing": [{"anything-but": "x"}]}}),
            ev.clone(),
            false,
        ),
        // Arrays: some element is not excluded.
        (
            json!({"detail": {"tags": [{"anything-but": "a"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"tags": [{"anything-but": ["a", "b"]}]}}),
            ev.clone(),
            false,
        ),
    ]);
}

#[test]
fn bad_patterns_are_refused_with_a_reason() {
    let invalid = [
        "not json",
        "[]",
        r#"{"source": "aws.ec2"}"#,
        r#"{"source": []}"#,
        r#"{"detail": {}}"#,
        r#"{"source": [["nested"]]}"#,
        r#"{"source": [{"prefix": 1}]}"#,
        r#"{"source": [{"exists": "yes"}]}"#,
        r#"{"source": [{"prefix": "a", "exists": true}]}"#,
        r#"{"source": [{"anything-but": []}]}"#,
        r#"{"source": [{"anything-but": [null]}]}"#,
        r#"{"source": [{"no-such-op": 1}]}"#,
    ];
    for p in invalid {
        match Pattern::parse(p) {
            Err(PatternError::Invalid(reason)) => assert!(!reason.is_empty(), "{p}"),
            other => panic!("{p}: expected Invalid, got {other:?}"),
        }
    }
    // The reasons are Ruler's.
    for (p, reason) in [
        (r#"{"source": []}"#, "Empty arrays are not allowed"),
        (r#"{"detail": {}}"#, "Empty objects are not allowed"),
        (r#"{"source": "aws.ec2"}"#, "\"source\" must be an object or an array"),
        (r#"{"f": [{"no-such-op": 1}]}"#, "Unrecognized match type no-such-op"),
        (r#"{"f": [{"prefix": "a", "exists": true}]}"#, "Only one key allowed in match expression"),
        (r#"{"f": [{"numeric": [">", "x"]}]}"#, "Value of > must be numeric"),
        (r#"{"f": [{"numeric": ["=", 1, "<", 2]}]}"#, "Too many elements in numeric expression"),
        (r#"{"f": [{"numeric": [">", 5, "<", 1]}]}"#, "Bottom must be less than top"),
        (r#"{"f": [{"numeric": [">", 5, ">", 9]}]}"#, "Bad numeric range operator: >"),
        (r#"{"f": [{"numeric": ["~", 5]}]}"#, "Unrecognized numeric range operator: ~"),
        (r#"{"f": [{"numeric": [">", 6e9]}]}"#, "Value must be between -5.0E9 and 5.0E9, inclusive"),
        (r#"{"f": [{"numeric": 5}]}"#, "Value of numeric must be an array."),
        (r#"{"f": [{"wildcard": "a**b"}]}"#, "Consecutive wildcard characters at pos 2"),
        (r#"{"f": [{"cidr": "10.0.0.300/24"}]}"#, "Nonstandard IP address: 10.0.0.300/24"),
        (r#"{"f": [{"cidr": "10.0.0.0/33"}]}"#, "Nonstandard IP address: 10.0.0.0/33"),
        (r#"{"f": [{"anything-but": {"prefix": ""}}]}"#, "Null prefix/suffix not allowed"),
        (r#"{"f": [{"anything-but": {"numeric": [">", 1]}}]}"#, "Unsupported anything-but pattern: numeric"),
        (r#"{"f": [{"anything-but": ["a", 1]}]}"#, "Inside anything but list, either all values are number or string, mixed type is not supported"),
        (r#"{"f": [{"anything-but": true}]}"#, "Value of anything-but must be an array or single string/number value."),
        (r#"{"$or": [{"a": ["1"]}]}"#, "There must have at least 2 Objects in $or relationship."),
        (r#"{"$or": {"a": ["1"]}}"#, "It must be an Array followed with $or."),
        (r#"{"$or": [{"a": ["1"]}, "b"]}"#, "Only JSON object is allowed in array of $or relationship."),
        (r#"{"$or": [{"a": ["1"]}, {"prefix": ["b"]}]}"#, "prefix is Ruler reserved fieldName which cannot be used inside $or."),
    ] {
        assert_eq!(
            Pattern::parse(p),
            Err(PatternError::Invalid(reason.to_string())),
            "{p}"
        );
    }
    assert_eq!(
        Pattern::parse(r#"{"source": []}"#).unwrap_err().to_string(),
        "Event pattern is not valid. Reason: Empty arrays are not allowed"
    );
}

#[test]
fn suffix_and_equals_ignore_case() {
    // The guide: "FileName" ending with ".png"; "eventName" in any case.
    let ev = json!({"detail": {"FileName": "image.PNG", "state": "STOPPED", "n": 5}});
    check(&[
        (
            json!({"detail": {"FileName": [{"suffix": ".png"}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"FileName": [{"suffix": ".PNG"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"FileName": [{"prefix": {"equals-ignore-case": "IMAGE"}}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"state": [{"equals-ignore-case": "stopped"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"state": [{"equals-ignore-case": "stopping"}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"n": [{"suffix": "5"}]}}),
            ev.clone(),
            false,
        ),
    ]);
}

#[test]
fn wildcard() {
    // The guide's examples: "EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}].
    let ev = json!({"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/orders", "path": "dir/a*b", "s": "abcabc"});
    check(&[
        (
            json!({"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]}),
            ev.clone(),
            true,
        ),
        (
            json!({"EventBusArn": [{"wildcard": "arn:aws:events:us-west-2:*:event-bus/*"}]}),
            ev.clone(),
            false,
        ),
        (
            json!({"EventBusArn": [{"wildcard": "*orders"}]}),
            ev.clone(),
            true,
        ),
        (
            json!({"EventBusArn": [{"wildcard": "*order"}]}),
            ev.clone(),
            false,
        ),
        (
            json!({"path": [{"wildcard": "dir/a\\*b"}]}),
            ev.clone(),
            true,
        ),
        (
            json!({"path": [{"wildcard": "dir/a\\*c"}]}),
            ev.clone(),
            false,
        ),
        (json!({"s": [{"wildcard": "abc*abc"}]}), ev.clone(), true),
        (
            json!({"s": [{"wildcard": "abcabc*abc"}]}),
            ev.clone(),
            false,
        ),
        (json!({"s": [{"wildcard": "*b*b*"}]}), ev.clone(), true),
        (json!({"s": [{"wildcard": "abcabc"}]}), ev.clone(), true),
        (json!({"s": [{"wildcard": "*"}]}), ev.clone(), true),
    ]);
}

#[test]
fn numeric() {
    // The guide's numeric example: c-count > 0 and <= 5, d-count < 10, x-limit = 301.8.
    let ev =
        json!({"detail": {"c-count": 5, "d-count": 7, "x-limit": 301.8, "s": "5", "arr": [1, 20]}});
    check(&[
        (
            json!({"detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}]
            }}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"c-count": [{"numeric": [">", 0, "<", 5]}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"c-count": [{"numeric": [">=", 5]}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"c-count": [{"numeric": [">", 5]}]}}),
            ev.clone(),
            false,
        ),
        // Strings are not numbers.
        (
            json!({"detail": {"s": [{"numeric": ["=", 5]}]}}),
            ev.clone(),
            false,
        ),
        // Arrays: any element.
        (
            json!({"detail": {"arr": [{"numeric": [">", 10]}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"arr": [{"numeric": [">", 30]}]}}),
            ev.clone(),
            false,
        ),
    ]);
}

#[test]
fn cidr() {
    // The guide: "sourceIPAddress": [{"cidr": "10.0.0.0/24"}].
    let ev =
        json!({"detail": {"sourceIPAddress": "10.0.0.255", "v6": "2001:db8::1", "bad": "nope"}});
    check(&[
        (
            json!({"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"sourceIPAddress": [{"cidr": "10.0.1.0/24"}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"sourceIPAddress": [{"cidr": "0.0.0.0/0"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"sourceIPAddress": [{"cidr": "10.0.0.255"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"v6": [{"cidr": "2001:db8::/32"}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"v6": [{"cidr": "2001:db9::/32"}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"v6": [{"cidr": "10.0.0.0/8"}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"bad": [{"cidr": "10.0.0.0/8"}]}}),
            ev.clone(),
            false,
        ),
    ]);
}

#[test]
fn anything_but_operators() {
    let ev = json!({"detail": {"state": "Initializing", "FileName": "a.txt", "n": 5}});
    check(&[
        // The guide: anything but a prefix / a suffix.
        (
            json!({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"state": [{"anything-but": {"prefix": "Init"}}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"FileName": [{"anything-but": {"suffix": ".txt"}}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"FileName": [{"anything-but": {"suffix": ".png"}}]}}),
            ev.clone(),
            true,
        ),
        // Ignoring case.
        (
            json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["initializing", "stopped"]}}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": "running"}}]}}),
            ev.clone(),
            true,
        ),
        // Wildcards.
        (
            json!({"detail": {"FileName": [{"anything-but": {"wildcard": "*.txt"}}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"FileName": [{"anything-but": {"wildcard": ["*.png", "b*"]}}]}}),
            ev.clone(),
            true,
        ),
        // A number is anything but a string prefix.
        (
            json!({"detail": {"n": [{"anything-but": {"prefix": "5"}}]}}),
            ev.clone(),
            true,
        ),
        // Absent: no.
        (
            json!({"detail": {"gone": [{"anything-but": {"prefix": "x"}}]}}),
            ev.clone(),
            false,
        ),
    ]);
}

#[test]
fn or_branches() {
    // The guide's `$or` example.
    let p = json!({
        "source": ["aws.cloudwatch"],
        "$or": [
            {"metricName": ["CPUUtilization", "ReadLatency"]},
            {"namespace": ["AWS/EC2", "AWS/ES"]}
        ]
    });
    let nested = json!({"detail": {"$or": [
        {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
        {"d-count": [{"numeric": ["<", 10]}]},
        {"x-limit": [{"numeric": ["=", 3.018e2]}]}
    ]}});
    check(&[
        (
            p.clone(),
            json!({"source": "aws.cloudwatch", "metricName": "ReadLatency"}),
            true,
        ),
        (
            p.clone(),
            json!({"source": "aws.cloudwatch", "namespace": "AWS/ES"}),
            true,
        ),
        (
            p.clone(),
            json!({"source": "aws.cloudwatch", "namespace": "AWS/S3"}),
            false,
        ),
        (
            p.clone(),
            json!({"source": "aws.ec2", "metricName": "ReadLatency"}),
            false,
        ),
        (
            nested.clone(),
            json!({"detail": {"c-count": 9, "d-count": 5}}),
            true,
        ),
        (
            nested.clone(),
            json!({"detail": {"c-count": 9, "d-count": 50, "x-limit": 1}}),
            false,
        ),
        (nested.clone(), json!({"detail": {"x-limit": 301.8}}), true),
    ]);
}

#[test]
fn exists_on_objects_and_empty_arrays() {
    let ev = json!({"detail": {"obj": {"x": 1}, "empty": [], "list": ["a"]}});
    check(&[
        // Ruler flattens events to leaves: an object or an empty array is no leaf.
        (
            json!({"detail": {"obj": [{"exists": false}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"empty": [{"exists": false}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"empty": [{"exists": true}]}}),
            ev.clone(),
            false,
        ),
        (
            json!({"detail": {"list": [{"exists": true}]}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"obj": {"x": [{"exists": true}]}}}),
            ev.clone(),
            true,
        ),
        (
            json!({"detail": {"obj": {"y": [{"exists": true}]}}}),
            ev.clone(),
            false,
        ),
    ]);
}

#[test]
fn sns_filter_policies_have_their_own_limits_and_errors() {
    assert!(Pattern::parse_filter_policy(r#"{"a": ["1"], "b": [{"prefix": "x"}]}"#).is_ok());
    let six = r#"{"a": ["1"], "b": ["1"], "c": ["1"], "d": ["1"], "e": ["1"], "f": ["1"]}"#;
    assert!(Pattern::parse(six).is_ok());
    let err = Pattern::parse_filter_policy(six).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid parameter: FilterPolicy: Filter policy can not have more than 5 keys"
    );
    let values: Vec<String> = (0..13).map(|i| format!("\"v{i}\"")).collect();
    let complex = format!(r#"{{"a": [{v}], "b": [{v}]}}"#, v = values.join(","));
    assert_eq!(
        Pattern::parse_filter_policy(&complex).unwrap_err(),
        PatternError::Policy("Filter policy is too complex".to_string())
    );
    assert_eq!(
        Pattern::parse_filter_policy(r#"{"a": [{"wildcard": "x*"}]}"#).unwrap_err(),
        PatternError::Policy("Unrecognized match type wildcard".to_string())
    );
    assert_eq!(
        Pattern::parse_filter_policy(r#"{"a": []}"#).unwrap_err(),
        PatternError::Policy("Empty arrays are not allowed".to_string())
    );
}
