//! A visitor becomes a logged-in user, then logs out everywhere: every step an app takes.
//!
//! ```sh
//! SESSION_SERVICE_URL=http://127.0.0.1:9000/lambda-url/api cargo run -p session-service-client --example quickstart
//! ```
//!
//! For a deployed stack, set `SESSION_SERVICE_URL` to the stack's `ApiUrl` output: the
//! example signs with your AWS credentials (environment or profile).

use session_service_client::{Client, Data, NewSession, Precondition, Rotation};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SESSION_SERVICE_URL").map_err(|_| "set SESSION_SERVICE_URL to the service's base URL")?;
    let client = if url.starts_with("http://") {
        Client::new(&url)?
    } else {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Client::from_sdk_config(&url, &config)?
    };

    // A visitor: an anonymous session with a cart.
    let visit = client
        .create(&NewSession::default().data(Data::from_json(r#"{"cart":[]}"#)?))
        .await?;
    client
        .merge(&visit.id, &Data::from_json(r#"{"cart":[7]}"#)?, Precondition::None)
        .await?;

    // Login: a new id owned by the user (the visitor's id stops working), cart kept.
    let user = format!("quickstart-{}", visit.session.handle.get(..8).unwrap_or("user"));
    let login = client.rotate(&visit.id, &Rotation::default().subject(&user)).await?;
    let page_view = client.get_and_touch(&login.id).await?;
    println!(
        "logged in as {user}: data {:?}, live through {}",
        page_view.data, page_view.expires_at
    );
    assert!(client.get(&visit.id).await.unwrap_err().is_not_found());

    // Another device, then "where you're logged in" and "log out everywhere else".
    let phone = client.create(&NewSession::default().subject(&user)).await?;
    let devices = client.list_all(&user).await?;
    println!(
        "{} sessions: {:?}",
        devices.len(),
        devices.iter().map(|d| &d.handle[..8]).collect::<Vec<_>>()
    );
    let revoked = client.revoke_all(&user, Some(&login.id)).await?;
    println!("logged out of {revoked} other session(s)");
    assert!(client.get(&phone.id).await.unwrap_err().is_not_found());

    client.delete(&login.id).await?;
    println!("logged out");
    Ok(())
}
