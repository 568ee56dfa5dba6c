//! The CLI's side of a running server: one HTTP client for every command that
//! takes `--host` (`write`, `query`, and `database`/`table`/`token` against a
//! server). `https://` hosts are verified against the system's roots and a CA
//! file (`--tls-ca`, as `influxdb3` has), with rustls on the ring provider;
//! a refused request is an error carrying the server's own message.

pub mod query;
pub mod write;

use std::path::{Path, PathBuf};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

/// `--host`, `--token` and `--tls-ca` of `write` and `query` (InfluxDB 3's
/// names; the variables are inflow's, the same the server reads).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's HTTP address (`https://` with `--tls-cert` on the server).
    #[arg(
        short = 'H',
        long,
        env = "INFLOW_HOST",
        default_value = "http://127.0.0.1:8086"
    )]
    pub host: String,
    /// A token with the permission the command needs.
    #[arg(long, env = "INFLOW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's, for a
    /// server whose certificate they sign (e.g. a self-signed CA).
    #[arg(long, env = "INFLOW_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("--host {0:?}: use an http:// or https:// address")]
    Scheme(String),
    #[error("--tls-ca {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-ca {path}: not a PEM certificate bundle: {source}")]
    CaPem {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("--tls-ca {0}: no PEM certificate in it")]
    CaEmpty(PathBuf),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request did not get an answer (refused, TLS, timeout). The chain
    /// (`{:#}`-style) names the cause, e.g. an unknown certificate issuer.
    #[error("{host}: {}", chain(source))]
    Send {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the server's answer: {0}")]
    Answer(String),
}

/// An error and its causes on one line: reqwest's own text ("error sending
/// request") does not say why, its sources do.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// A running server, reached with one token.
#[derive(Debug, Clone)]
pub struct Remote {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Remote {
    pub fn connect(
        host: &str,
        token: Option<String>,
        tls_ca: Option<&Path>,
    ) -> Result<Self, RemoteError> {
        if !(host.starts_with("http://") || host.starts_with("https://")) {
            return Err(RemoteError::Scheme(host.to_string()));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(path) = tls_ca {
            let pem = std::fs::read(path).map_err(|source| RemoteError::CaFile {
                path: path.to_path_buf(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                RemoteError::CaPem {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            if certs.is_empty() {
                return Err(RemoteError::CaEmpty(path.to_path_buf()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(RemoteError::Client)?;
        Ok(Self {
            client,
            base: host.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    pub fn from_args(args: &ServerArgs) -> Result<Self, RemoteError> {
        Self::connect(&args.host, args.token.clone(), args.tls_ca.as_deref())
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (with its query string), with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Token {token}")),
            None => request,
        }
    }

    /// Sends `request`; a non-2xx answer is [`RemoteError::Refused`] with the
    /// server's message (every endpoint's JSON `error`/`message`, else its
    /// text), and `detail` may add what the body says beyond it.
    pub async fn send(
        &self,
        request: RequestBuilder,
        detail: &dyn Fn(&serde_json::Value) -> Option<String>,
    ) -> Result<Response, RemoteError> {
        let response = request.send().await.map_err(|source| RemoteError::Send {
            host: self.base.clone(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        let mut message = message(&body, detail);
        if status == StatusCode::UNAUTHORIZED {
            message.push_str(match self.token {
                Some(_) => " (the server does not take this token: check --token or INFLOW_TOKEN)",
                None => " (no token given: set --token or INFLOW_TOKEN)",
            });
        }
        Err(RemoteError::Refused { status, message })
    }

    /// A JSON request and its answer's bytes.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<bytes::Bytes, RemoteError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.to_string());
        }
        let response = self.send(request, &|_| None).await?;
        response.bytes().await.map_err(|source| RemoteError::Send {
            host: self.base.clone(),
            source,
        })
    }
}

/// A command's input: its bytes, and what they came from (a file, `stdin`).
#[derive(Debug)]
pub struct Input {
    pub what: String,
    pub bytes: Vec<u8>,
}

/// A command's input could not be read: `what` names it.
#[derive(Debug)]
pub struct ReadFailed {
    pub what: String,
    pub source: std::io::Error,
}

/// What a command reads: `argument` if given, else `file` (`-` is stdin),
/// else stdin; `None` when that would be a terminal (nothing was given).
pub fn read_input(
    argument: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Input>, ReadFailed> {
    use std::io::{IsTerminal, Read};
    if let Some(text) = argument {
        return Ok(Some(Input {
            what: "the argument".into(),
            bytes: text.as_bytes().to_vec(),
        }));
    }
    let what = match file {
        Some(path) if path.as_os_str() != "-" => path.display().to_string(),
        _ => "stdin".to_string(),
    };
    let bytes = match file {
        Some(path) if path.as_os_str() != "-" => std::fs::read(path),
        _ => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Ok(None);
            }
            let mut bytes = Vec::new();
            stdin.read_to_end(&mut bytes).map(|_| bytes)
        }
    };
    match bytes {
        Ok(bytes) => Ok(Some(Input { what, bytes })),
        Err(source) => Err(ReadFailed { what, source }),
    }
}

/// The server's message in an error body: `error` (v1, v3), `message` (v2),
/// and what `detail` finds, or the text itself.
fn message(body: &[u8], detail: &dyn Fn(&serde_json::Value) -> Option<String>) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::from_utf8_lossy(body).trim().to_string();
    };
    let text = ["error", "message"]
        .iter()
        .find_map(|k| value.get(k).and_then(|v| v.as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    match detail(&value) {
        Some(more) => format!("{text}\n{more}"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_every_error_shape() {
        let none = &|_: &serde_json::Value| None;
        assert_eq!(message(br#"{"error":"no such db"}"#, none), "no such db");
        assert_eq!(
            message(br#"{"code":"invalid","message":"bad"}"#, none),
            "bad"
        );
        assert_eq!(message(b"plain text\n", none), "plain text");
        assert_eq!(message(br#"{"other":1}"#, none), r#"{"other":1}"#);
    }

    #[test]
    fn hosts_need_a_scheme_and_ca_files_must_hold_certificates() {
        let e = Remote::connect("127.0.0.1:8086", None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--host \"127.0.0.1:8086\": use an http:// or https:// address"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Remote::connect("https://x", None, Some(&missing)).unwrap_err();
        assert!(matches!(e, RemoteError::CaFile { .. }), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let e = Remote::connect("https://x", None, Some(&empty)).unwrap_err();
        assert!(
            matches!(e, RemoteError::CaEmpty(_) | RemoteError::CaPem { .. }),
            "{e}"
        );
    }
}
