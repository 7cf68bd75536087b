//! Many requests at once through the handler, against DynamoDB Local: conditional
//! writes decide every race, and nothing acknowledged is lost.

mod common;

use std::collections::HashSet;

use common::*;
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn fifty_patches_with_one_if_match_give_one_200_and_49_412s_and_the_winners_data() {
    let (app, _, _) = app().await;
    let id = create(&app, r#"{"data": {"n": -1}}"#).await;
    let patches: Vec<_> = (0..50)
        .map(|n| {
            let event = with_body(
                event_for("merge-session", &id),
                &json!({"data": {"n": n}}).to_string(),
                Some("application/merge-patch+json"),
            );
            with_header(event, "if-match", "\"1\"")
        })
        .collect();
    let replies = futures::future::join_all(patches.iter().map(|e| call(&app, e))).await;

    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let winners: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 412).count(), 49, "{statuses:?}");
    let got = call(&app, &event_for("get-session", &id)).await;
    assert_eq!(got.json["data"], winners[0].json["data"]);
    assert_eq!(got.json["version"], 2);
    assert_eq!(got.header("etag"), Some("\"2\""));
}

#[tokio::test]
async fn ten_thousand_concurrent_creates_give_distinct_ids_all_readable_at_once() {
    const SESSIONS: usize = 10_000;
    let (app, _, _) = app().await;
    let app = &app;
    let ids: Vec<String> = futures::stream::iter(0..SESSIONS)
        .map(|n| async move { create(app, &json!({"data": {"n": n}}).to_string()).await })
        .buffer_unordered(64)
        .collect()
        .await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), SESSIONS);

    let unreadable: Vec<u16> = futures::stream::iter(&ids)
        .map(|id| async move { call(app, &event_for("get-session", id)).await.status })
        .buffer_unordered(64)
        .filter(|&status| std::future::ready(status != 200))
        .collect()
        .await;
    assert!(
        unreadable.is_empty(),
        "{} not readable: {unreadable:?}",
        unreadable.len()
    );
}
