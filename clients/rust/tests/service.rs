//! The client against the running service (`scripts/run --in-memory`, at the URL in
//! `SESSION_SERVICE_URL`; the README's test command starts it). Without it these fail.

use session_service_client::{
    Client, Data, Device, Error, NewSession, Precondition, ProblemKind, Replacement, Rotation, SessionId,
};

fn client() -> Client {
    let url = std::env::var("SESSION_SERVICE_URL")
        .expect("SESSION_SERVICE_URL: the running service (scripts/run --in-memory) these tests call");
    Client::new(&url).expect("a local URL")
}

/// A subject no other test (or run) uses.
fn subject(name: &str) -> String {
    format!("{name}-{}", getrandom::u64().expect("randomness"))
}

fn data(json: &str) -> Data {
    Data::from_json(json).expect("JSON")
}

#[tokio::test]
async fn every_route_through_a_sessions_life() {
    let client = client();
    client.health().await.expect("the service answers");
    let owner = subject("every-route");
    let device = Device {
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip: Some("::ffff:203.0.113.9".into()),
        label: Some("Work laptop".into()),
    };

    let created = client
        .create(&NewSession::default().data(data(r#"{"cart":[]}"#)).device(device))
        .await
        .unwrap();
    assert_eq!(created.session.subject, None);
    assert_eq!(
        created.session.device.as_ref().unwrap().ip.as_deref(),
        Some("203.0.113.9")
    );
    let read = client.get(&created.id).await.unwrap();
    assert_eq!(read, created.session);

    let replaced = client
        .replace(
            &created.id,
            &Replacement::new(data(r#"{"cart":[7]}"#)),
            Precondition::Version(read.version),
        )
        .await
        .unwrap();
    assert_eq!(replaced.version, read.version + 1);
    let merged = client
        .merge(&created.id, &data(r#"{"coupon":"X"}"#), Precondition::Exists)
        .await
        .unwrap();
    assert_eq!(merged.data.as_json(), r#"{"cart":[7],"coupon":"X"}"#);
    let touched = client.touch(&created.id).await.unwrap();
    assert_eq!(touched.version, merged.version);
    client.get_and_touch(&created.id).await.unwrap();

    let login = client
        .rotate(&created.id, &Rotation::default().subject(owner.clone()))
        .await
        .unwrap();
    assert_ne!(login.id, created.id);
    assert!(
        client.get(&created.id).await.unwrap_err().is_not_found(),
        "the old id is gone"
    );
    assert_eq!(login.session.subject.as_deref(), Some(owner.as_str()));
    assert_eq!(login.session.data, merged.data);

    let listed = client.list_all(&owner).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, login.session.handle);
    assert_eq!(listed[0].device.as_ref().unwrap().label.as_deref(), Some("Work laptop"));

    assert_eq!(
        login.session.handle, created.session.handle,
        "a rotation keeps the handle"
    );
    client.revoke(&owner, &login.session.handle).await.unwrap();
    assert!(
        client
            .revoke(&owner, &login.session.handle)
            .await
            .unwrap_err()
            .is_not_found(),
        "revoked before: the handle names no live session, nothing is done"
    );
    assert!(client.get(&login.id).await.unwrap_err().is_not_found());
    assert!(client.list_all(&owner).await.unwrap().is_empty());

    let other = client.create(&NewSession::default()).await.unwrap();
    client.delete(&other.id).await.unwrap();
    client
        .delete(&other.id)
        .await
        .expect("deleting a deleted session succeeds");
    assert!(client.touch(&other.id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn top_level_and_nested_member_order_survives_every_read_and_write() {
    let client = client();
    let written = r#"{"zeta":1,"alpha":{"y":true,"b":null},"mid":[3,1,2],"Ä":"é","0":0.10}"#;
    let created = client.create(&NewSession::default().data(data(written))).await.unwrap();
    assert_eq!(created.session.data.as_json(), written);
    assert_eq!(client.get(&created.id).await.unwrap().data.as_json(), written);
    assert_eq!(client.get_and_touch(&created.id).await.unwrap().data.as_json(), written);
    assert_eq!(client.touch(&created.id).await.unwrap().data.as_json(), written);

    let replaced = r#"{"z":1,"a":2,"m":3}"#;
    let session = client
        .replace(&created.id, &Replacement::new(data(replaced)), Precondition::None)
        .await
        .unwrap();
    assert_eq!(session.data.as_json(), replaced);
    // A merge keeps the members where they are and appends new ones.
    let session = client
        .merge(
            &created.id,
            &data(r#"{"a":{"q":1,"c":2},"b":4,"z":null}"#),
            Precondition::None,
        )
        .await
        .unwrap();
    let merged = r#"{"a":{"q":1,"c":2},"m":3,"b":4}"#;
    assert_eq!(session.data.as_json(), merged);
    let rotated = client.rotate(&created.id, &Rotation::default()).await.unwrap();
    assert_eq!(rotated.session.data.as_json(), merged);
    assert_eq!(client.get(&rotated.id).await.unwrap().data.as_json(), merged);
    client.delete(&rotated.id).await.unwrap();
}

#[tokio::test]
async fn problems_arrive_typed() {
    let client = client();
    let created = client.create(&NewSession::default()).await.unwrap();
    let stale = Precondition::Version(created.session.version + 1);
    let error = client
        .replace(&created.id, &Replacement::new(Data::empty()), stale)
        .await
        .unwrap_err();
    assert_eq!(error.problem_kind(), Some(ProblemKind::PreconditionFailed), "{error}");

    let error = client
        .create(&NewSession::default().idle_timeout_seconds(0))
        .await
        .unwrap_err();
    assert_eq!(error.problem_kind(), Some(ProblemKind::InvalidRequest), "{error}");
    let Error::Problem(problem) = error else { unreachable!() };
    assert_eq!(problem.status, 422);

    let error = client.get(&SessionId::new("not-an-id")).await.unwrap_err();
    assert!(error.is_not_found());
    let error = client.list("x", Some(0), None).await.unwrap_err();
    assert_eq!(error.problem_kind(), Some(ProblemKind::InvalidQuery), "{error}");
    client.delete(&created.id).await.unwrap();
}

#[tokio::test]
async fn djangos_default_age_is_admitted_and_the_service_defaults_stay_when_none_is_named() {
    let client = client();
    let fortnight = 14 * 24 * 60 * 60;
    let django = client
        .create(
            &NewSession::default()
                .idle_timeout_seconds(fortnight)
                .absolute_timeout_seconds(fortnight),
        )
        .await
        .unwrap();
    assert_eq!(django.session.idle_timeout_seconds, fortnight);
    let plain = client.create(&NewSession::default()).await.unwrap();
    assert_eq!(plain.session.idle_timeout_seconds, 1800);
    assert_eq!(
        (plain.session.absolute_expires_at - plain.session.created_at).whole_seconds(),
        43200
    );
    client.delete(&django.id).await.unwrap();
    client.delete(&plain.id).await.unwrap();
}

#[tokio::test]
async fn an_owners_sessions_page_by_cursor_and_log_out_everywhere_keeps_the_one_asked() {
    let client = client();
    let owner = subject("pages/ü ?#%"); // every character that needs percent-encoding in a path
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            client
                .create(&NewSession::default().subject(owner.clone()))
                .await
                .unwrap(),
        );
    }
    let first = client.list(&owner, Some(2), None).await.unwrap();
    assert_eq!(first.sessions.len(), 2);
    let cursor = first.next_cursor.expect("a second page");
    let second = client.list(&owner, Some(2), Some(&cursor)).await.unwrap();
    assert_eq!(second.sessions.len(), 1);
    let listed: Vec<_> = first.sessions.iter().chain(&second.sessions).collect();
    assert!(
        listed.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "oldest first"
    );
    let mut handles: Vec<_> = listed.iter().map(|s| s.handle.clone()).collect();
    let mut created: Vec<_> = ids.iter().map(|i| i.session.handle.clone()).collect();
    handles.sort();
    created.sort();
    assert_eq!(handles, created);

    let revoked = client.revoke_all(&owner, Some(&ids[1].id)).await.unwrap();
    assert_eq!(revoked, 2);
    let left = client.list_all(&owner).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].handle, ids[1].session.handle);
    assert!(client.get(&ids[0].id).await.unwrap_err().is_not_found());
    assert_eq!(client.revoke_all(&owner, None).await.unwrap(), 1);
}
