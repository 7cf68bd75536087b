//! Invoking functions served by `cargo lambda watch`, through its emulation of
//! Lambda's Invoke API.

use std::time::Duration;

use serde_json::Value;

use crate::mapping::Invocation;

/// The Invoke API of `cargo lambda watch` at one address.
#[derive(Debug, Clone)]
pub struct Emulator {
    base: String,
    agent: ureq::Agent,
}

impl Emulator {
    /// The emulator at `base` (`http://127.0.0.1:9000`).
    pub fn new(base: &str) -> Self {
        // The first call of a function waits for `cargo lambda watch` to build it.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(900)))
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// Invokes `function` synchronously with `payload`.
    pub fn invoke(&self, function: &str, payload: &str) -> Invocation {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.base);
        let mut response = match self.agent.post(&url).send(payload) {
            Ok(response) => response,
            Err(e) => return Invocation::Failed(format!("{function} unreachable: {e}")),
        };
        let status = response.status().as_u16();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = match response.body_mut().read_to_string() {
            Ok(body) => body,
            Err(e) => return Invocation::Failed(format!("{function}: reading the response: {e}")),
        };
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let error_shaped = parsed
            .as_ref()
            .is_some_and(|v| v.get("errorType").is_some() || v.get("errorMessage").is_some());
        match parsed {
            Some(value) if status == 200 && !function_error && !error_shaped => Invocation::Returned(value),
            _ => Invocation::Failed(format!("{function} failed ({status}): {body}")),
        }
    }
}
