//! Direct reads (feature `direct-reads`) against the running service and its table
//! (`SESSION_SERVICE_URL`, `SESSION_SERVICE_SESSIONS_TABLE`, `AWS_ENDPOINT_URL_DYNAMODB`;
//! the README's test command sets all three). Each case is read both ways, through the
//! service's `GET` and straight from the table, and the answers must be the same.

use aws_sdk_dynamodb::types::AttributeValue;
use session_service_client::{
    Client, Data, Device, Error, NewSession, Precondition, ProblemKind, Replacement, Rotation, Session, SessionId,
};
use session_store::item;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: set by the README's test command for these tests"))
}

/// The service's client, and the same with direct reads.
async fn clients() -> (Client, Client, aws_sdk_dynamodb::Client) {
    let url = env("SESSION_SERVICE_URL");
    let dynamodb = aws_sdk_dynamodb::Client::new(&lambda_support::sdk_config().await);
    let direct = Client::builder(&url)
        .direct_reads(&dynamodb, env("SESSION_SERVICE_SESSIONS_TABLE"))
        .build()
        .expect("a local URL");
    (Client::new(&url).expect("a local URL"), direct, dynamodb)
}

fn data(json: &str) -> Data {
    Data::from_json(json).expect("JSON")
}

fn subject(name: &str) -> String {
    format!("{name}-{}", getrandom::u64().expect("randomness"))
}

/// Both reads of `id`: the same session, or both not found.
async fn same_both_ways(service: &Client, direct: &Client, id: &SessionId) -> Option<Session> {
    let (by_service, read_directly) = (service.get(id).await, direct.get(id).await);
    match (by_service, read_directly) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the service's answer and the direct read differ");
            assert_eq!(a.data.as_json(), b.data.as_json(), "members in the same order");
            Some(a)
        }
        (Err(a), Err(b)) if a.is_not_found() && b.is_not_found() => None,
        (a, b) => panic!("the service answered {a:?}, the direct read {b:?}"),
    }
}

/// The item key of `id`, as the store derives it.
fn key(id: &SessionId) -> std::collections::HashMap<String, AttributeValue> {
    item::key(
        &session_store::SessionId::parse(id.expose())
            .expect("an issued id")
            .handle(),
    )
}

#[tokio::test]
async fn a_direct_read_answers_what_the_service_answers_through_a_sessions_life() {
    let (service, direct, _) = clients().await;
    let owner = subject("direct");
    let device = Device {
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip: Some("203.0.113.9".into()),
        label: Some("Work laptop".into()),
    };
    let anonymous = service
        .create(&NewSession::default().data(data(r#"{"z":1,"a":{"é":"ü","n":[1,2.5,null]}}"#)))
        .await
        .unwrap();
    let read = same_both_ways(&service, &direct, &anonymous.id).await.expect("live");
    assert_eq!(read.data.as_json(), r#"{"z":1,"a":{"é":"ü","n":[1,2.5,null]}}"#);

    let owned = service
        .create(
            &NewSession::default()
                .subject(&owner)
                .device(device)
                .data(data(r#"{"cart":[]}"#)),
        )
        .await
        .unwrap();
    assert!(
        same_both_ways(&service, &direct, &owned.id)
            .await
            .unwrap()
            .device
            .is_some()
    );
    service
        .replace(
            &owned.id,
            &Replacement::new(data(r#"{"cart":[7]}"#)),
            Precondition::Version(1),
        )
        .await
        .unwrap();
    assert_eq!(same_both_ways(&service, &direct, &owned.id).await.unwrap().version, 2);

    let rotated = service.rotate(&owned.id, &Rotation::default()).await.unwrap();
    assert_eq!(same_both_ways(&service, &direct, &owned.id).await, None, "the old id");
    let after = same_both_ways(&service, &direct, &rotated.id).await.unwrap();
    assert_eq!(after.handle, rotated.session.handle);

    let large = format!(r#"{{"blob":"{}"}}"#, "x".repeat(300_000));
    let big = service.create(&NewSession::default().data(data(&large))).await.unwrap();
    assert_eq!(
        same_both_ways(&service, &direct, &big.id).await.unwrap().data.as_json(),
        large
    );

    service.delete(&anonymous.id).await.unwrap();
    assert_eq!(same_both_ways(&service, &direct, &anonymous.id).await, None, "deleted");
    service.revoke_all(&owner, None).await.unwrap();
    assert_eq!(same_both_ways(&service, &direct, &rotated.id).await, None, "revoked");
    for never in ["not-an-id", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        assert_eq!(
            same_both_ways(&service, &direct, &SessionId::new(never)).await,
            None,
            "{never}"
        );
    }
}

#[tokio::test]
async fn an_expired_session_reads_as_none_both_ways() {
    let (service, direct, _) = clients().await;
    let short = service
        .create(&NewSession::default().idle_timeout_seconds(1))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(same_both_ways(&service, &direct, &short.id).await, None);
}

#[tokio::test]
async fn an_altered_document_reads_as_none_directly_where_the_service_answers_500() {
    let (service, direct, dynamodb) = clients().await;
    let issued = service
        .create(&NewSession::default().data(data(r#"{"a":1}"#)))
        .await
        .unwrap();
    let table = env("SESSION_SERVICE_SESSIONS_TABLE");
    let stored = dynamodb
        .get_item()
        .table_name(&table)
        .set_key(Some(key(&issued.id)))
        .send()
        .await
        .unwrap();
    let mut document = stored.item.unwrap()["doc"].as_b().unwrap().clone().into_inner();
    *document.last_mut().unwrap() ^= 1;
    dynamodb
        .update_item()
        .table_name(&table)
        .set_key(Some(key(&issued.id)))
        .update_expression("SET #d = :d")
        .expression_attribute_names("#d", "doc")
        .expression_attribute_values(":d", AttributeValue::B(document.into()))
        .send()
        .await
        .unwrap();
    assert!(direct.get(&issued.id).await.unwrap_err().is_not_found());
    match service.get(&issued.id).await {
        Err(Error::Problem(problem)) => assert_eq!((problem.status, problem.kind()), (500, ProblemKind::Internal)),
        other => panic!("the service answers an unopenable session with a 500, not {other:?}"),
    }
}

#[tokio::test]
async fn a_page_view_touches_through_the_service_only_when_a_touch_is_due() {
    let (service, direct, dynamodb) = clients().await;
    let issued = service
        .create(&NewSession::default().idle_timeout_seconds(3_600))
        .await
        .unwrap();
    // Not due: the read is the session as it is, expiry unchanged.
    let viewed = direct.get_and_touch(&issued.id).await.unwrap();
    assert_eq!(viewed.expires_at, issued.session.expires_at);
    assert_eq!(viewed.updated_at, issued.session.updated_at);

    // Due: its last activity two minutes back (past the 60 s step).
    let back = |t: time::OffsetDateTime| AttributeValue::N((t.unix_timestamp() - 120).to_string());
    dynamodb
        .update_item()
        .table_name(env("SESSION_SERVICE_SESSIONS_TABLE"))
        .set_key(Some(key(&issued.id)))
        .update_expression("SET updated_at = :u, expires_at = :e")
        .expression_attribute_values(":u", back(issued.session.updated_at))
        .expression_attribute_values(":e", back(issued.session.expires_at))
        .send()
        .await
        .unwrap();
    let slid = direct.get_and_touch(&issued.id).await.unwrap();
    assert!(
        slid.expires_at >= issued.session.expires_at,
        "the service slid it: {slid:?}"
    );
    assert_eq!(
        service.get(&issued.id).await.unwrap().expires_at,
        slid.expires_at,
        "and wrote it"
    );

    // A session revoked meanwhile is not found, whether or not a touch is due.
    service.delete(&issued.id).await.unwrap();
    assert!(direct.get_and_touch(&issued.id).await.unwrap_err().is_not_found());
}
