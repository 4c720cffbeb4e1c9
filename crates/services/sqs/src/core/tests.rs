use super::*;
use crate::store::SqliteBackend;

pub(crate) fn open(dir: &std::path::Path) -> Arc<Sqs> {
    let b = SqliteBackend::open(&dir.join("sqs.db")).unwrap();
    Sqs::open(Arc::new(b), "us-east-1", "123456789012").unwrap()
}

pub(crate) fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn msg(body: &str) -> SendInput {
    SendInput {
        body: body.into(),
        sender_id: "123456789012".into(),
        ..Default::default()
    }
}

fn fifo_msg(body: &str, group: &str) -> SendInput {
    SendInput {
        group_id: Some(group.into()),
        ..msg(body)
    }
}

fn now_input(max: usize, vt: Option<u32>) -> ReceiveInput {
    ReceiveInput {
        max,
        visibility_timeout: vt,
        wait_seconds: Some(0),
    }
}

async fn send1(sqs: &Sqs, q: &str, m: SendInput) -> SendOutput {
    sqs.send(q, vec![m]).await.unwrap().pop().unwrap().unwrap()
}

#[tokio::test]
async fn send_receive_delete_and_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let sqs = open(dir.path());
    sqs.create_queue("q", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let out = send1(&sqs, "q", msg("hello")).await;
    assert_eq!(out.md5_body, "5d41402abc4b2a76b9719d911017c592");
    let got = sqs.receive("q", now_input(10, Some(30))).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, out.message_id);
    assert_eq!(got[0].system["ApproximateReceiveCount"], "1");
    // In flight: not received again.
    assert!(sqs
        .receive("q", now_input(10, None))
        .await
        .unwrap()
        .is_empty());
    let a = sqs.get_attributes("q", &["All".into()]).unwrap();
    assert_eq!(a["ApproximateNumberOfMessagesNotVisible"], "1");
    // Visibility 0 makes it visible again; the old handle is superseded.
    sqs.change_visibility("q", &got[0].receipt_handle, 0)
        .await
        .unwrap();
    let again = sqs.receive("q", now_input(10, Some(30))).await.unwrap();
    assert_eq!(again[0].system["ApproximateReceiveCount"], "2");
    let e = sqs
        .change_visibility("q", &got[0].receipt_handle, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(e, SqsError::InvalidParameterValue(ref m) if m.contains("expired")),
        "{e:?}"
    );
    // The superseded handle deletes nothing; the current one does.
    sqs.delete_message("q", &got[0].receipt_handle)
        .await
        .unwrap();
    assert_eq!(sqs.peek("q", 10).unwrap().len(), 1);
    sqs.delete_message("q", &again[0].receipt_handle)
        .await
        .unwrap();
    assert!(sqs.peek("q", 10).unwrap().is_empty());
    assert!(matches!(
        sqs.delete_message("q", "garbage").await,
        Err(SqsError::ReceiptHandleIsInvalid(_))
    ));
}

#[tokio::test]
async fn fifo_orders_groups_blocks_in_flight_groups_and_deduplicates() {
    let dir = tempfile::tempdir().unwrap();
    let sqs = open(dir.path());
    sqs.create_queue(
        "f.fifo",
        &attrs(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let a1 = send1(&sqs, "f.fifo", fifo_msg("a1", "a")).await;
    send1(&sqs, "f.fifo", fifo_msg("b1", "b")).await;
    send1(&sqs, "f.fifo", fifo_msg("a2", "a")).await;
    // Same body, same group: a duplicate within 5 minutes answers the first id.
    let dup = send1(&sqs, "f.fifo", fifo_msg("a1", "a")).await;
    assert_eq!(dup.message_id, a1.message_id);
    assert_eq!(dup.sequence_number, a1.sequence_number);
    let first = sqs.receive("f.fifo", now_input(1, Some(30))).await.unwrap();
    assert_eq!(first[0].body, "a1");
    // Group a is blocked while a1 is in flight: b1 comes next, not a2.
    let second = sqs
        .receive("f.fifo", now_input(10, Some(30)))
        .await
        .unwrap();
    let bodies: Vec<&str> = second.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["b1"]);
    sqs.delete_message("f.fifo", &first[0].receipt_handle)
        .await
        .unwrap();
    let third = sqs
        .receive("f.fifo", now_input(10, Some(30)))
        .await
        .unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].body, "a2");
    // Deleted, the first copy still deduplicates.
    let dup = send1(&sqs, "f.fifo", fifo_msg("a1", "a")).await;
    assert_eq!(dup.message_id, a1.message_id);
    // FIFO needs a group, and takes no per-message delay.
    let r = sqs.send("f.fifo", vec![msg("x")]).await.unwrap();
    assert!(matches!(r[0], Err(SqsError::MissingParameter(_))));
    let r = sqs
        .send(
            "f.fifo",
            vec![SendInput {
                delay_seconds: Some(5),
                ..fifo_msg("x", "a")
            }],
        )
        .await
        .unwrap();
    assert!(matches!(r[0], Err(SqsError::InvalidParameterValue(_))));
}

#[tokio::test]
async fn redrive_moves_to_the_dead_letter_queue_after_max_receives() {
    let dir = tempfile::tempdir().unwrap();
    let sqs = open(dir.path());
    sqs.create_queue("dlq", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":2}}"#,
        sqs.arn("dlq")
    );
    sqs.create_queue(
        "src",
        &attrs(&[("RedrivePolicy", &policy)]),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(sqs.dead_letter_sources("dlq").unwrap(), ["src"]);
    send1(&sqs, "src", msg("poison")).await;
    for n in 1..=2 {
        let got = sqs.receive("src", now_input(1, Some(0))).await.unwrap();
        assert_eq!(got[0].system["ApproximateReceiveCount"], n.to_string());
    }
    // The third receive moves it instead of returning it.
    assert!(sqs
        .receive("src", now_input(1, Some(0)))
        .await
        .unwrap()
        .is_empty());
    let dead = sqs.receive("dlq", now_input(1, Some(0))).await.unwrap();
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].system["DeadLetterQueueSourceArn"], sqs.arn("src"));
    // A redrive task brings it back to its source.
    let h = sqs.start_move(&sqs.arn("dlq"), None, None).await.unwrap();
    let notify = sqs.notifier("src").unwrap();
    loop {
        let n = notify.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if !sqs.peek("src", 10).unwrap().is_empty() {
            break;
        }
        n.await;
    }
    let back = sqs.receive("src", now_input(1, Some(30))).await.unwrap();
    assert_eq!(back[0].body, "poison");
    assert_eq!(back[0].system["ApproximateReceiveCount"], "1");
    let tasks = sqs.list_moves(&sqs.arn("dlq"), 10).unwrap();
    assert_eq!(tasks[0].handle, h);
    // A RedriveAllowPolicy that denies all refuses new sources.
    sqs.set_attributes(
        "dlq",
        &attrs(&[("RedriveAllowPolicy", r#"{"redrivePermission":"denyAll"}"#)]),
    )
    .await
    .unwrap();
    let e = sqs
        .create_queue(
            "src2",
            &attrs(&[("RedrivePolicy", &policy)]),
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SqsError::InvalidParameterValue(_)), "{e:?}");
}

#[tokio::test]
async fn a_long_poll_is_woken_by_a_send() {
    let dir = tempfile::tempdir().unwrap();
    let sqs = open(dir.path());
    sqs.create_queue("q", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let s2 = sqs.clone();
    let waiter = tokio::spawn(async move {
        s2.receive(
            "q",
            ReceiveInput {
                max: 1,
                visibility_timeout: None,
                wait_seconds: Some(20),
            },
        )
        .await
    });
    tokio::task::yield_now().await;
    send1(&sqs, "q", msg("wake")).await;
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got[0].body, "wake");
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let sqs = open(dir.path());
        sqs.create_queue(
            "q",
            &attrs(&[("VisibilityTimeout", "60")]),
            &attrs(&[("team", "a")]),
        )
        .await
        .unwrap();
        for i in 0..5 {
            send1(&sqs, "q", msg(&format!("m{i}"))).await;
        }
        let got = sqs.receive("q", now_input(2, None)).await.unwrap();
        sqs.delete_message("q", &got[0].receipt_handle)
            .await
            .unwrap();
        // got[1] stays in flight (60 s).
    }
    let sqs = open(dir.path());
    let a = sqs.get_attributes("q", &["All".into()]).unwrap();
    assert_eq!(a["VisibilityTimeout"], "60");
    assert_eq!(a["ApproximateNumberOfMessages"], "3");
    assert_eq!(a["ApproximateNumberOfMessagesNotVisible"], "1");
    assert_eq!(sqs.tags("q").unwrap()["team"], "a");
    let got = sqs.receive("q", now_input(10, None)).await.unwrap();
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m2", "m3", "m4"]);
}

#[tokio::test]
async fn queues_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let sqs = open(dir.path());
    sqs.create_queue("q", &attrs(&[("DelaySeconds", "5")]), &BTreeMap::new())
        .await
        .unwrap();
    // Same attributes: the same queue; different: QueueNameExists.
    sqs.create_queue("q", &attrs(&[("DelaySeconds", "5")]), &BTreeMap::new())
        .await
        .unwrap();
    assert!(matches!(
        sqs.create_queue("q", &attrs(&[("DelaySeconds", "6")]), &BTreeMap::new())
            .await,
        Err(SqsError::QueueNameExists(_))
    ));
    assert!(matches!(
        sqs.create_queue("bad name", &BTreeMap::new(), &BTreeMap::new())
            .await,
        Err(SqsError::InvalidParameterValue(_))
    ));
    assert!(matches!(
        sqs.create_queue("x.fifo", &BTreeMap::new(), &BTreeMap::new())
            .await,
        Err(SqsError::InvalidParameterValue(_))
    ));
    // Delayed messages count as delayed, not visible.
    send1(&sqs, "q", msg("later")).await;
    let a = sqs.get_attributes("q", &["All".into()]).unwrap();
    assert_eq!(a["ApproximateNumberOfMessagesDelayed"], "1");
    assert_eq!(a["ApproximateNumberOfMessages"], "0");
    sqs.purge("q").await.unwrap();
    assert!(matches!(
        sqs.purge("q").await,
        Err(SqsError::PurgeQueueInProgress(_))
    ));
    let big = "x".repeat(262_145);
    let r = sqs.send("q", vec![msg(&big)]).await.unwrap();
    assert!(matches!(r[0], Err(SqsError::InvalidParameterValue(ref m)) if m.contains("262144")));
    assert!(matches!(
        sqs.send("nope", vec![msg("x")]).await,
        Err(SqsError::QueueDoesNotExist)
    ));
}

/// A move task survives its server: one runtime (the first server) starts it
/// and dies after the first message moved; the next opens the same file,
/// resumes the task, and every message is moved exactly once.
#[test]
fn a_move_task_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = first.block_on(async {
        let sqs = open(dir.path());
        sqs.create_queue("dlq", &BTreeMap::new(), &BTreeMap::new())
            .await
            .unwrap();
        let policy = format!(
            r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":2}}"#,
            sqs.arn("dlq")
        );
        sqs.create_queue(
            "src",
            &attrs(&[("RedrivePolicy", &policy)]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        for i in 0..4 {
            send1(&sqs, "dlq", msg(&format!("m{i}"))).await;
        }
        // One message a second: the first goes at once, the rest wait.
        let h = sqs
            .start_move(&sqs.arn("dlq"), Some(&sqs.arn("src")), Some(1))
            .await
            .unwrap();
        let notify = sqs.notifier("src").unwrap();
        loop {
            let n = notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if !sqs.peek("src", 10).unwrap().is_empty() {
                break;
            }
            n.await;
        }
        // A second task on the same source is refused while this one runs.
        let e = sqs
            .start_move(&sqs.arn("dlq"), None, None)
            .await
            .unwrap_err();
        assert!(matches!(e, SqsError::UnsupportedOperation(_)), "{e:?}");
        // The writer commits in order: once a later change is durable, so is the
        // first move (as it would be on disk when a real server is killed).
        sqs.set_attributes("src", &attrs(&[("VisibilityTimeout", "30")]))
            .await
            .unwrap();
        h
    });
    // The first server dies with its task mid-way.
    first.shutdown_background();

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let sqs = open(dir.path());
        let before = sqs.list_moves(&sqs.arn("dlq"), 10).unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].handle, handle);
        assert_eq!(before[0].status, "RUNNING");
        assert_eq!(before[0].to_move, 4);
        assert!(before[0].moved >= 1);
        assert_eq!(before[0].max_per_second, Some(1));
        sqs.resume_moves();
        // Until it ends (polled: the end wakes nothing a test can wait on).
        for _ in 0..6000 {
            if sqs.list_moves(&sqs.arn("dlq"), 1).unwrap()[0].status != "RUNNING" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let task = &sqs.list_moves(&sqs.arn("dlq"), 1).unwrap()[0];
        assert_eq!((task.moved, task.to_move), (4, 4));
        let mut bodies: Vec<String> = sqs
            .peek("src", 10)
            .unwrap()
            .iter()
            .map(|m| m.body.clone())
            .collect();
        bodies.sort();
        assert_eq!(bodies, ["m0", "m1", "m2", "m3"]);
        assert!(sqs.peek("dlq", 10).unwrap().is_empty());
    });
    // And the end is durable too.
    second.block_on(async {
        let sqs = open(dir.path());
        let task = &sqs.list_moves(&sqs.arn("dlq"), 1).unwrap()[0];
        assert_eq!(task.status, "COMPLETED");
    });
}
