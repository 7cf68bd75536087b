//! A minimal Lambda Runtime API (the HTTP interface the Lambda service offers a
//! function's `bootstrap`), enough to start a function as Lambda does and hand
//! it events one at a time: `invocation/next`, `{id}/response`, `{id}/error`
//! and `init/error`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tiny_http::{Header, Method, Response, Server};

type Error = Box<dyn std::error::Error>;

/// A function process started the way Lambda starts one, with its own Runtime
/// API on a free loopback port. Dropping it kills the process.
pub struct Function {
    server: Server,
    process: Child,
}

/// What a function answered to one event.
pub struct Answer {
    /// When the function asked for the event (its init had ended, for the first).
    pub asked: Instant,
    /// When the answer arrived.
    pub at: Instant,
    /// The function's response document.
    pub body: String,
}

impl Function {
    /// Starts `bootstrap` in a clean environment holding the Lambda variables,
    /// the Runtime API's address and `env`. Its stdout (the logs) is dropped.
    pub fn launch(bootstrap: &Path, env: &HashMap<String, String>) -> Result<Self, Error> {
        let server = Server::http("127.0.0.1:0").map_err(|e| e.to_string())?;
        let address = server
            .server_addr()
            .to_ip()
            .ok_or("the runtime API stub has no IP address")?
            .to_string();
        let name = bootstrap.file_name().and_then(|n| n.to_str()).unwrap_or("function");
        let process = Command::new(bootstrap)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", address)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_SESSION_TOKEN", "local")
            .env("TZ", ":UTC")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bootstrap.display()))?;
        Ok(Self { server, process })
    }

    /// Hands `events` to the function one at a time and returns its answers in
    /// order, as soon as the last one arrives (the function is then left waiting
    /// for its next event). A function error or init error is an error here.
    pub fn serve(&self, events: impl IntoIterator<Item = String>) -> Result<Vec<Answer>, Error> {
        let mut events = events.into_iter();
        let mut answers = Vec::new();
        let mut next = events.next();
        let mut asked = Instant::now();
        loop {
            let Some(mut request) = self.server.recv_timeout(Duration::from_secs(30))? else {
                return Err("the function made no runtime API call for 30 s".into());
            };
            let url = request.url().to_owned();
            let mut body = String::new();
            std::io::Read::read_to_string(request.as_reader(), &mut body)?;
            let method = request.method().clone();
            match (&method, url.trim_start_matches("/2018-06-01/runtime/")) {
                (Method::Get, "invocation/next") => {
                    let Some(event) = next.take() else {
                        return Err("the function asked for an event after the last one".into());
                    };
                    asked = Instant::now();
                    let id = format!("bench-{}", answers.len());
                    let deadline = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() + 10_000;
                    let response = Response::from_string(event)
                        .with_header(header("Content-Type", "application/json"))
                        .with_header(header("Lambda-Runtime-Aws-Request-Id", &id))
                        .with_header(header("Lambda-Runtime-Deadline-Ms", &deadline.to_string()))
                        .with_header(header(
                            "Lambda-Runtime-Invoked-Function-Arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:bench",
                        ))
                        .with_header(header(
                            "Lambda-Runtime-Trace-Id",
                            "Root=1-00000000-000000000000000000000000",
                        ));
                    request.respond(response)?;
                }
                (Method::Post, path) if path.starts_with("invocation/") && path.ends_with("/response") => {
                    let at = Instant::now();
                    request.respond(Response::empty(202))?;
                    answers.push(Answer { asked, at, body });
                    next = events.next();
                    if next.is_none() {
                        return Ok(answers);
                    }
                }
                (Method::Post, path) if path.ends_with("/error") => {
                    request.respond(Response::empty(202))?;
                    return Err(format!("the function reported an error at {path}: {body}").into());
                }
                (method, _) => {
                    request.respond(Response::empty(404))?;
                    return Err(format!("unexpected runtime API call {method} {url}").into());
                }
            }
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("header names and values are ASCII")
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Function {
    /// The peak resident set size of the process so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> Result<u64, Error> {
        peak_rss(self.process.id())
    }
}

fn peak_rss(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/PID/status")?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}
