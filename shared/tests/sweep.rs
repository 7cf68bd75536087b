//! The sweep against DynamoDB Local.

use std::time::Instant;

use session_store::error::StoreError;
use session_store::sweep::{StoppedBy, SweepOptions};
use session_store::{Config, DynamoStore, NewSession, SessionId, Timestamp};
use session_testkit as testkit;

fn lasting(idle: u32) -> NewSession {
    NewSession {
        idle_timeout_seconds: Some(idle),
        absolute_timeout_seconds: Some(86_400),
        ..Default::default()
    }
}

async fn create(store: &DynamoStore, n: usize, idle: u32, now: Timestamp) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(store.create(lasting(idle), None, now).await.unwrap().id);
    }
    ids
}

/// Whether the item is still in the table, expired or not.
async fn stored(store: &DynamoStore, id: &SessionId) -> bool {
    testkit::raw_item(store, id).await.is_some()
}

async fn setup(adjust: impl FnOnce(&mut Config)) -> (DynamoStore, Timestamp) {
    let (store, _) = testkit::store(adjust).await;
    (store, Timestamp::now())
}

#[tokio::test]
async fn expired_sessions_are_removed_and_live_ones_kept_without_reading_them() {
    let (store, t0) = setup(|_| {}).await;
    let expired = create(&store, 5, 60, t0).await;
    let live = create(&store, 20, 3600, t0).await;
    let summary = store.sweep(&SweepOptions::at(t0.plus(120))).await.unwrap();
    assert_eq!(
        (summary.examined, summary.deleted, summary.skipped_live),
        (5, 5, 0),
        "{summary:?}"
    );
    assert!(summary.complete && summary.stopped_by.is_none());
    for id in &expired {
        assert!(!stored(&store, id).await);
    }
    for id in &live {
        assert!(stored(&store, id).await);
    }
    let again = store.sweep(&SweepOptions::at(t0.plus(120))).await.unwrap();
    assert_eq!((again.examined, again.deleted), (0, 0), "nothing left to look at");
}

#[tokio::test]
async fn a_session_touched_after_it_was_filed_survives_the_sweep() {
    let (store, t0) = setup(|_| {}).await;
    let id = create(&store, 1, 60, t0).await.remove(0);
    let touched = store.touch(&id, t0.plus(50)).await.unwrap();
    assert_eq!(touched.expires_at, t0.plus(110));
    let summary = store.sweep(&SweepOptions::at(t0.plus(100))).await.unwrap();
    assert_eq!(
        (summary.examined, summary.deleted, summary.skipped_live),
        (1, 0, 1),
        "{summary:?}"
    );
    assert_eq!(store.get(&id, t0.plus(100)).await.unwrap().expires_at, t0.plus(110));
    let later = store.sweep(&SweepOptions::at(t0.plus(111))).await.unwrap();
    assert_eq!(later.deleted, 1, "{later:?}");
    assert!(matches!(store.get(&id, t0.plus(50)).await, Err(StoreError::NotFound)));
}

#[tokio::test]
async fn a_live_session_far_from_expiry_is_refiled_so_later_sweeps_skip_it() {
    let (store, t0) = setup(|c| c.expiry_bucket_seconds = 60).await;
    let id = create(&store, 1, 600, t0).await.remove(0);
    store.touch(&id, t0.plus(590)).await.unwrap();
    let first = store.sweep(&SweepOptions::at(t0.plus(700))).await.unwrap();
    assert_eq!((first.examined, first.skipped_live), (1, 1), "{first:?}");
    let second = store.sweep(&SweepOptions::at(t0.plus(700))).await.unwrap();
    assert_eq!(second.examined, 0, "re-filed under its new expiry: {second:?}");
    assert!(store.get(&id, t0.plus(700)).await.is_ok());
}

#[tokio::test]
async fn every_page_of_every_shard_is_swept() {
    let (store, t0) = setup(|c| c.expiry_shards = 2).await;
    let expired = create(&store, 30, 60, t0).await;
    let options = SweepOptions {
        page_size: Some(4),
        ..SweepOptions::at(t0.plus(61))
    };
    let summary = store.sweep(&options).await.unwrap();
    assert_eq!((summary.examined, summary.deleted), (30, 30), "{summary:?}");
    assert!(summary.complete);
    for id in &expired {
        assert!(!stored(&store, id).await);
    }
}

#[tokio::test]
async fn a_dry_run_counts_but_changes_nothing() {
    let (store, t0) = setup(|_| {}).await;
    let expired = create(&store, 4, 60, t0).await;
    let touched = create(&store, 1, 60, t0).await.remove(0);
    store.touch(&touched, t0.plus(55)).await.unwrap();
    let options = SweepOptions {
        dry_run: true,
        ..SweepOptions::at(t0.plus(100))
    };
    let summary = store.sweep(&options).await.unwrap();
    assert!(summary.dry_run);
    assert_eq!(
        (summary.examined, summary.deleted, summary.skipped_live),
        (5, 4, 1),
        "{summary:?}"
    );
    for id in expired.iter().chain([&touched]) {
        assert!(stored(&store, id).await);
    }
}

#[tokio::test]
async fn a_run_stopped_by_its_limit_or_time_budget_is_finished_by_the_next() {
    let (store, t0) = setup(|_| {}).await;
    let expired = create(&store, 25, 60, t0).await;
    let now = t0.plus(61);
    let limited = store
        .sweep(&SweepOptions {
            limit: Some(10),
            ..SweepOptions::at(now)
        })
        .await
        .unwrap();
    assert_eq!((limited.examined, limited.deleted), (10, 10), "{limited:?}");
    assert_eq!((limited.complete, limited.stopped_by), (false, Some(StoppedBy::Limit)));
    let out_of_time = store
        .sweep(&SweepOptions {
            deadline: Some(Instant::now()),
            ..SweepOptions::at(now)
        })
        .await
        .unwrap();
    assert_eq!((out_of_time.examined, out_of_time.complete), (0, false));
    assert_eq!(out_of_time.stopped_by, Some(StoppedBy::TimeBudget));
    let rest = store.sweep(&SweepOptions::at(now)).await.unwrap();
    assert_eq!((rest.deleted, rest.complete), (15, true), "{rest:?}");
    for id in &expired {
        assert!(!stored(&store, id).await);
    }
}

#[tokio::test]
async fn the_deadline_holds_inside_a_page_and_the_next_run_finishes() {
    let (store, t0) = setup(|c| c.expiry_shards = 1).await;
    let expired = create(&store, 40, 60, t0).await;
    let faults = testkit::Faults::default();
    // Slow deletes: the one page of 40 candidates would take 2 s at 2 at a time.
    faults.delay("DeleteItem", std::time::Duration::from_millis(100));
    let options = SweepOptions {
        concurrency: 2,
        page_size: Some(100),
        deadline: Some(Instant::now() + std::time::Duration::from_millis(250)),
        ..SweepOptions::at(t0.plus(61))
    };
    let first = with_faults(&store, &faults).sweep(&options).await.unwrap();
    assert!(first.deleted < 40, "no delete starts past the deadline: {first:?}");
    assert_eq!((first.complete, first.stopped_by), (false, Some(StoppedBy::TimeBudget)));
    assert_eq!(
        first.examined, first.deleted,
        "what the deadline cut off counts as not examined"
    );
    let rest = store.sweep(&SweepOptions::at(t0.plus(61))).await.unwrap();
    assert_eq!((rest.deleted + first.deleted, rest.complete), (40, true), "{rest:?}");
    for id in &expired {
        assert!(!stored(&store, id).await);
    }
}

#[tokio::test]
async fn runs_start_at_varying_shards_so_a_backlog_starves_none() {
    let shards = 4;
    let (store, t0) = setup(|c| c.expiry_shards = shards).await;
    let expired = create(&store, 60, 60, t0).await;
    let shard_of = |id: &SessionId| id.handle().shard(shards);
    // A run cut short (here by its limit) works from its first shard on.
    let mut left = expired.clone();
    for first_shard in [3, 1] {
        let in_shard = left.iter().filter(|id| shard_of(id) == first_shard).count();
        assert!(in_shard > 0, "60 sessions over 4 shards");
        let cut = store
            .sweep(&SweepOptions {
                limit: Some(in_shard as u64),
                first_shard,
                ..SweepOptions::at(t0.plus(61))
            })
            .await
            .unwrap();
        assert_eq!(cut.deleted as usize, in_shard, "{cut:?}");
        let mut still = Vec::new();
        for id in left {
            if stored(&store, &id).await {
                still.push(id);
            } else {
                assert_eq!(shard_of(&id), first_shard, "only the first shard was swept");
            }
        }
        left = still;
    }
    // Each run picks its first shard afresh (4 shards, 64 runs: all of them).
    let firsts: std::collections::BTreeSet<u32> = (0..64).map(|_| SweepOptions::at(t0).first_shard % shards).collect();
    assert_eq!(firsts.len(), shards as usize, "{firsts:?}");
}

#[tokio::test]
async fn a_throttled_index_query_or_refiling_ends_the_run_with_its_summary_not_an_error() {
    let (store, t0) = setup(|_| {}).await;
    let faults = testkit::Faults::default();
    let faulty = with_faults(&store, &faults);
    let expired = create(&store, 3, 60, t0).await;
    // Throttled past the SDK's retries, the expiry index gives nothing: the run stops.
    faults.throttle("Query", "", u32::MAX);
    let stopped = faulty.sweep(&SweepOptions::at(t0.plus(61))).await.unwrap();
    assert_eq!((stopped.deleted, stopped.complete), (0, false), "{stopped:?}");
    assert_eq!(stopped.stopped_by, Some(StoppedBy::Throttled));
    // A live candidate whose re-filing is throttled is still counted; it is looked at again.
    faults.clear();
    let live = create(&store, 1, 600, t0).await.remove(0);
    store.touch(&live, t0.plus(590)).await.unwrap();
    faults.throttle("UpdateItem", "", u32::MAX);
    let swept = faulty.sweep(&SweepOptions::at(t0.plus(700))).await.unwrap();
    assert_eq!(
        (swept.deleted, swept.skipped_live, swept.complete),
        (3, 1, true),
        "{swept:?}"
    );
    faults.clear();
    let again = faulty.sweep(&SweepOptions::at(t0.plus(700))).await.unwrap();
    assert_eq!(
        (again.examined, again.skipped_live),
        (1, 1),
        "not re-filed, so read again: {again:?}"
    );
    for id in &expired {
        assert!(!stored(&store, id).await);
    }
}

/// A store on `store`'s table whose requests go through `faults`.
fn with_faults(store: &DynamoStore, faults: &testkit::Faults) -> DynamoStore {
    DynamoStore::new(testkit::faulty_client(faults), store.config().clone())
}

#[tokio::test]
async fn throttled_deletes_back_off_and_resume_and_a_run_that_gives_up_is_finished_by_the_next() {
    let (store, t0) = setup(|_| {}).await;
    let faults = testkit::Faults::default();
    let faulty = with_faults(&store, &faults);
    let now = t0.plus(61);

    // Brief throttling: the SDK's retries and the sweep's pauses absorb it.
    let first = create(&store, 6, 60, t0).await;
    faults.throttle("DeleteItem", "", 10);
    let absorbed = faulty.sweep(&SweepOptions::at(now)).await.unwrap();
    assert_eq!(faults.throttled(), 10);
    assert_eq!((absorbed.deleted, absorbed.complete), (6, true), "{absorbed:?}");

    // Throttling that outlasts every pause: the run stops, deleting nothing it was not sure of.
    let second = create(&store, 4, 60, t0).await;
    faults.throttle("DeleteItem", "", u32::MAX);
    let before = faults.throttled();
    let stopped = faulty.sweep(&SweepOptions::at(now)).await.unwrap();
    assert_eq!((stopped.deleted, stopped.complete), (0, false), "{stopped:?}");
    assert_eq!(stopped.stopped_by, Some(StoppedBy::Throttled));
    // The run stops at the first shard whose candidate stayed throttled, after trying it
    // once more after each of the sweep's 4 pauses (the SDK's own retries on top).
    assert!(
        faults.throttled() - before >= 5,
        "tried after every pause: {}",
        faults.throttled() - before
    );
    for id in &second {
        assert!(stored(&store, id).await, "nothing deleted while throttled");
    }

    // The next run, unthrottled, finishes the job.
    faults.clear();
    let next = faulty.sweep(&SweepOptions::at(now)).await.unwrap();
    assert_eq!((next.deleted, next.complete), (4, true), "{next:?}");
    for id in first.iter().chain(&second) {
        assert!(!stored(&store, id).await);
    }
}

#[tokio::test]
async fn a_sweep_killed_mid_run_is_finished_by_the_next() {
    let (store, t0) = setup(|_| {}).await;
    let faults = testkit::Faults::default();
    let expired = create(&store, 20, 60, t0).await;
    let now = t0.plus(61);
    // One delete never returns; the run is killed (as Lambda ends a timed-out invocation).
    faults.stall("DeleteItem", expired[7].handle().as_str());
    let options = SweepOptions {
        concurrency: 4,
        ..SweepOptions::at(now)
    };
    let killed = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        with_faults(&store, &faults).sweep(&options),
    )
    .await;
    assert!(killed.is_err(), "the run was killed, not finished: {killed:?}");
    let left: usize = futures::future::join_all(expired.iter().map(|id| stored(&store, id)))
        .await
        .into_iter()
        .filter(|s| *s)
        .count();
    assert!(left >= 1, "the stalled delete never reached DynamoDB Local");

    let next = store.sweep(&options).await.unwrap();
    assert_eq!((next.deleted as usize, next.complete), (left, true), "{next:?}");
    for id in &expired {
        assert!(!stored(&store, id).await);
    }
}

#[tokio::test]
async fn a_touch_racing_the_sweep_either_keeps_the_session_or_finds_it_gone_never_half() {
    let (mut kept, mut swept) = (0, 0);
    for round in 0..5 {
        let (store, start) = setup(|c| c.expiry_shards = 2).await;
        let ids = create(&store, 40, 60, start).await;
        // The last second of their life: a touch now is in time; the sweep runs a second later.
        let touch_at = start.plus(60);
        // Staggered, so that some touches land before the sweep reaches them and some after.
        let touches = futures::future::join_all(ids.iter().enumerate().map(|(i, id)| {
            let store = &store;
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(i as u64 * 3)).await;
                store.touch(id, touch_at).await
            }
        }));
        let options = SweepOptions {
            concurrency: 8,
            ..SweepOptions::at(touch_at.plus(1))
        };
        let sweep = store.sweep(&options);
        let (touches, summary) = futures::join!(touches, sweep);
        let summary = summary.unwrap();
        let mut gone = 0;
        for (id, touch) in ids.iter().zip(touches) {
            let after = store.get(id, touch_at.plus(1)).await;
            match touch {
                Ok(touched) => {
                    assert_eq!(touched.expires_at, touch_at.plus(60));
                    assert_eq!(
                        after.unwrap().expires_at,
                        touch_at.plus(60),
                        "a touched session lives on"
                    );
                    kept += 1;
                }
                Err(StoreError::NotFound) => {
                    assert!(!stored(&store, id).await, "a touch that found nothing left nothing");
                    gone += 1;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(summary.deleted, gone, "round {round}: {summary:?}");
        swept += gone;
    }
    assert_eq!(kept + swept, 200);
    eprintln!("touch won {kept} times, the sweep {swept} times");
}

/// With no reserved concurrency, a run that outlasts the interval overlaps the next.
/// Every delete is conditional on the session still being expired, so two runs on
/// the same backlog delete each session once between them: the second finds it
/// gone, and neither counts it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweeps_at_once_delete_each_expired_session_exactly_once() {
    let (store, t0) = setup(|config| config.expiry_shards = 4).await;
    let mut overlapped = 0;
    for round in 0..3 {
        let expired = create(&store, 40, 60, t0).await;
        let live = create(&store, 10, 3600, t0).await;
        let options = SweepOptions::at(t0.plus(120));
        let (first, second) = tokio::join!(store.sweep(&options), store.sweep(&options));
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(
            first.deleted + second.deleted,
            40,
            "round {round}: each expired session deleted once: {first:?} {second:?}"
        );
        assert!(first.complete && second.complete, "round {round}");
        overlapped += usize::from(first.examined > 0 && second.examined > 0);
        for id in &expired {
            assert!(!stored(&store, id).await, "round {round}");
        }
        for id in &live {
            assert!(stored(&store, id).await, "round {round}");
        }
    }
    assert!(overlapped > 0, "in no round did both runs work on the backlog");
}
