use super::*;
use crate::test_support::*;
use std::time::Duration;

struct Rig {
    dir: tempfile::TempDir,
    stream: Arc<MemStream>,
    dispatch: Arc<FnDispatch>,
    sinks: Arc<Sinks>,
}

impl Rig {
    fn new() -> Rig {
        let dispatch = FnDispatch::ok();
        let sinks = Arc::new(Sinks::new(dispatch.clone()));
        sinks.register_queues(Arc::new(KeptQueue::default()));
        Rig {
            dir: tempfile::tempdir().unwrap(),
            stream: MemStream::new(&["shard-0"]),
            dispatch,
            sinks,
        }
    }

    fn open(&self) -> Registry {
        Registry::open(
            self.dir.path(),
            Vec::new(),
            vec![self.stream.clone()],
            self.dispatch.clone(),
            self.sinks.clone(),
            "us-east-1".into(),
        )
        .unwrap()
    }
}

fn req(v: Value) -> MappingRequest {
    serde_json::from_value(v).unwrap()
}

async fn settle(reg: &Registry, uuid: &str, state: &str) -> Value {
    for _ in 0..3000 {
        let v = reg.get(uuid).unwrap();
        if v["State"] == state {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("mapping {uuid} never became {state}");
}

#[tokio::test]
async fn create_get_update_delete() {
    let rig = Rig::new();
    let reg = rig.open();
    let created = reg
        .create(req(json!({
            "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "EventSourceArn": STREAM,
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 7,
        })))
        .await
        .unwrap();
    assert_eq!(created["State"], "Creating");
    assert_eq!(created["StateTransitionReason"], "USER_INITIATED");
    assert_eq!(created["BatchSize"], 7);
    assert_eq!(created["MaximumRetryAttempts"], -1);
    assert_eq!(created["ParallelizationFactor"], 1);
    assert_eq!(created["DestinationConfig"], json!({ "OnFailure": {} }));
    assert_eq!(created["LastProcessingResult"], "No records processed");
    assert_eq!(
        created["FunctionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:f"
    );
    let uuid = created["UUID"].as_str().unwrap().to_string();
    assert_eq!(
        created["EventSourceMappingArn"],
        format!("arn:aws:lambda:us-east-1:123456789012:event-source-mapping:{uuid}")
    );
    settle(&reg, &uuid, "Enabled").await;
    // Running: a record reaches the function.
    rig.stream.put("shard-0", "k", "hello");
    rig.dispatch.wait_for(|e| !e.is_empty()).await;

    let up = reg
        .update(&uuid, req(json!({ "Enabled": false, "BatchSize": 3 })))
        .await
        .unwrap();
    assert_eq!(up["State"], "Disabling");
    assert_eq!(up["BatchSize"], 3);
    let v = settle(&reg, &uuid, "Disabled").await;
    assert_eq!(v["BatchSize"], 3);
    // Disabled: nothing more is read.
    let seen = rig.dispatch.events().len();
    rig.stream.put("shard-0", "k", "while disabled");
    tokio::task::yield_now().await;
    assert_eq!(rig.dispatch.events().len(), seen);
    let up = reg
        .update(&uuid, req(json!({ "Enabled": true })))
        .await
        .unwrap();
    assert_eq!(up["State"], "Enabling");
    settle(&reg, &uuid, "Enabled").await;
    // It resumes where it stopped.
    rig.dispatch
        .wait_for(|e| {
            e.iter()
                .any(|e| datas_of(e).contains(&"while disabled".into()))
        })
        .await;

    let del = reg.delete(&uuid).await.unwrap();
    assert_eq!(del["State"], "Deleting");
    for _ in 0..3000 {
        if reg.get(&uuid).is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(reg.get(&uuid), Err(EsmError::NotFound(_))));
    assert!(matches!(
        reg.delete(&uuid).await,
        Err(EsmError::NotFound(_))
    ));
}

#[tokio::test]
async fn refusals_carry_lambdas_errors() {
    let rig = Rig::new();
    let reg = rig.open();
    let base =
        json!({ "FunctionName": "f", "EventSourceArn": STREAM, "StartingPosition": "LATEST" });
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        req(b)
    };
    let e = reg
        .create(with(json!({ "BatchSize": 0 })))
        .await
        .unwrap_err();
    assert_eq!(e, EsmError::InvalidParameter("1 validation error detected: Value '0' at 'batchSize' failed to satisfy constraint: Member must have value greater than or equal to 1".into()));
    let e = reg
        .create(with(json!({ "FunctionName": "nope" })))
        .await
        .unwrap_err();
    assert!(matches!(e, EsmError::NotFound(m) if m.contains("function:nope")));
    let e = reg
        .create(with(json!({ "EventSourceArn": "arn:aws:s3:::bucket" })))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        EsmError::InvalidParameter(
            "Unrecognized event source, must be kinesis, dynamodb stream or sqs.".into()
        )
    );
    let e = reg
        .create(with(
            json!({ "EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/missing" }),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, EsmError::InvalidParameter(m) if m.starts_with("Stream not found")));
    let e = reg
        .create(with(json!({ "StartingPosition": null })))
        .await
        .unwrap_err();
    assert!(matches!(e, EsmError::InvalidParameter(m) if m.contains("startingPosition")));
    let e = reg
        .create(with(
            json!({ "FilterCriteria": { "Filters": [{ "Pattern": "{\"a\": 1}" }] } }),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e, EsmError::InvalidParameter(m) if m.starts_with("Invalid filter pattern definition"))
    );
    let e = reg
        .create(with(json!({ "DestinationConfig": { "OnFailure": { "Destination": "arn:aws:sqs:us-east-1:123456789012:nope" } } })))
        .await
        .unwrap_err();
    assert!(matches!(e, EsmError::InvalidParameter(m) if m.contains("does not exist")));
    let e = reg
        .create(with(json!({ "Topics": ["t"] })))
        .await
        .unwrap_err();
    assert!(matches!(e, EsmError::InvalidParameter(_)));
    // Nothing was created by the refusals.
    assert_eq!(reg.count(), 0);

    let ok = reg.create(with(json!({}))).await.unwrap();
    let e = reg.create(with(json!({}))).await.unwrap_err();
    assert_eq!(e, EsmError::Conflict(format!(
        "The event source arn (\" {STREAM} \") and function (\" f \") provided mapping already exists. Please update or delete the existing mapping with UUID {}",
        ok["UUID"].as_str().unwrap()
    )));
    // The same stream may feed another qualifier of the function.
    reg.create(with(json!({ "FunctionName": "f:live" })))
        .await
        .unwrap();
    let uuid = ok["UUID"].as_str().unwrap();
    // In transition: ResourceInUseException.
    if reg.get(uuid).unwrap()["State"] == "Creating" {
        assert!(matches!(
            reg.update(uuid, req(json!({ "BatchSize": 5 }))).await,
            Err(EsmError::InUse(_))
        ));
    }
    settle(&reg, uuid, "Enabled").await;
    let e = reg
        .update(uuid, req(json!({ "StartingPosition": "TRIM_HORIZON" })))
        .await
        .unwrap_err();
    assert!(matches!(e, EsmError::InvalidParameter(_)));
    assert!(matches!(
        reg.get("00000000-0000-0000-0000-000000000000"),
        Err(EsmError::NotFound(_))
    ));
}

#[tokio::test]
async fn list_filters_and_pages() {
    let rig = Rig::new();
    let reg = rig.open();
    let mut uuids = Vec::new();
    for f in ["f", "f:live"] {
        let v = reg
            .create(req(json!({ "FunctionName": f, "EventSourceArn": STREAM, "StartingPosition": "LATEST" })))
            .await
            .unwrap();
        uuids.push(v["UUID"].as_str().unwrap().to_string());
    }
    let all = reg.list(None, None, None, None).unwrap();
    assert_eq!(all["EventSourceMappings"].as_array().unwrap().len(), 2);
    assert!(all.get("NextMarker").is_none());
    let live = reg.list(Some("f:live"), None, None, None).unwrap();
    let live = live["EventSourceMappings"].as_array().unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["UUID"], uuids[1].as_str());
    let by_fn = reg.list(Some("f"), Some(STREAM), None, None).unwrap();
    assert_eq!(by_fn["EventSourceMappings"].as_array().unwrap().len(), 2);
    let none = reg
        .list(
            None,
            Some("arn:aws:kinesis:us-east-1:123456789012:stream/other"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(none["EventSourceMappings"], json!([]));
    // Pages follow the full listing's order (creation time, then UUID: two
    // mappings created in one millisecond are ordered by their random UUIDs).
    let order: Vec<&str> = all["EventSourceMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["UUID"].as_str().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    let mut created = uuids.iter().map(String::as_str).collect::<Vec<_>>();
    created.sort();
    assert_eq!(sorted, created);
    let p1 = reg.list(None, None, None, Some(1)).unwrap();
    assert_eq!(p1["EventSourceMappings"][0]["UUID"], order[0]);
    let marker = p1["NextMarker"].as_str().unwrap();
    let p2 = reg.list(None, None, Some(marker), Some(1)).unwrap();
    assert_eq!(p2["EventSourceMappings"][0]["UUID"], order[1]);
    assert!(p2.get("NextMarker").is_none());
    assert!(matches!(
        reg.list(None, None, Some("garbage"), None),
        Err(EsmError::InvalidParameter(_))
    ));
    assert!(matches!(
        reg.list(None, None, None, Some(0)),
        Err(EsmError::InvalidParameter(_))
    ));
}

#[tokio::test]
async fn mappings_survive_a_restart() {
    let rig = Rig::new();
    let uuid = {
        let reg = rig.open();
        let v = reg
            .create(req(json!({ "FunctionName": "f", "EventSourceArn": STREAM, "StartingPosition": "TRIM_HORIZON", "BatchSize": 9 })))
            .await
            .unwrap();
        let uuid = v["UUID"].as_str().unwrap().to_string();
        settle(&reg, &uuid, "Enabled").await;
        uuid
    };
    // A new registry on the same file (the old one's tasks die with its runtime
    // in a real restart; here the new one takes over).
    let reg = rig.open();
    let v = reg.get(&uuid).unwrap();
    assert_eq!(v["State"], "Enabled");
    assert_eq!(v["BatchSize"], 9);
    rig.stream.put("shard-0", "k", "after restart");
    rig.dispatch
        .wait_for(|e| {
            e.iter()
                .any(|e| datas_of(e).contains(&"after restart".into()))
        })
        .await;
}

#[test]
fn function_name_forms() {
    assert_eq!(split_function_name("f"), ("f".into(), None));
    assert_eq!(
        split_function_name("f:live"),
        ("f".into(), Some("live".into()))
    );
    assert_eq!(
        split_function_name("123456789012:function:f"),
        ("f".into(), None)
    );
    assert_eq!(
        split_function_name("arn:aws:lambda:us-east-1:123456789012:function:f:3"),
        ("f".into(), Some("3".into()))
    );
}
