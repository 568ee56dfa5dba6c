//! `inflow write`: line protocol from an argument, a file or stdin, posted to
//! `/api/v3/write_lp` as `influxdb3 write` does. A refused write prints the
//! server's error with each rejected line's number and text.

use std::io::{IsTerminal, Read, Write as _};
use std::path::PathBuf;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::Method;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::{Remote, RemoteError, ServerArgs};

/// Bodies from this size on are sent gzipped: line protocol shrinks about
/// tenfold, so big files cross the network and the server's
/// `--max-request-bytes` as a tenth (`--max-decompressed-bytes` still holds).
const GZIP_FROM_BYTES: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The database to write to (created by the first write of an operator token).
    #[arg(short = 'd', long, env = "INFLOW_DATABASE")]
    pub database: String,
    /// A file of line protocol to write (`-`: stdin).
    #[arg(short = 'f', long, conflicts_with = "line_protocol")]
    pub file: Option<PathBuf>,
    /// Write the good lines even if some are rejected (the command still fails,
    /// naming the rejected ones). Without it a bad line fails the whole write.
    #[arg(long)]
    pub accept_partial: bool,
    /// The unit of the timestamps; by default each one's unit is guessed from
    /// its magnitude.
    #[arg(short = 'p', long, value_enum)]
    pub precision: Option<Precision>,
    /// Line protocol, quoted as one argument (else --file, else stdin).
    pub line_protocol: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Precision {
    Auto,
    #[value(alias = "nanosecond")]
    Ns,
    #[value(alias = "microsecond")]
    Us,
    #[value(alias = "millisecond")]
    Ms,
    #[value(alias = "second")]
    S,
}

impl Precision {
    /// `/api/v3/write_lp`'s name for it.
    fn v3(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Ns => "nanosecond",
            Self::Us => "microsecond",
            Self::Ms => "millisecond",
            Self::S => "second",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "no line protocol: give it as an argument, with --file, or on stdin \
         (stdin is a terminal)"
    )]
    NoInput,
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Writes and prints `success`, as `influxdb3 write` does.
pub async fn run(args: WriteArgs) -> Result<(), WriteError> {
    let body = input(&args)?;
    let remote = Remote::from_args(&args.server)?;
    let mut params = vec![
        ("db", args.database.as_str()),
        (
            "accept_partial",
            if args.accept_partial { "true" } else { "false" },
        ),
    ];
    if let Some(p) = args.precision {
        params.push(("precision", p.v3()));
    }
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    let mut request = remote
        .request(Method::POST, &format!("/api/v3/write_lp?{query}"))
        .header(CONTENT_TYPE, "text/plain; charset=utf-8");
    request = if body.len() >= GZIP_FROM_BYTES {
        request
            .header(CONTENT_ENCODING, "gzip")
            .body(gzip(&body).map_err(|source| WriteError::Read {
                what: "the line protocol (gzip)".into(),
                source,
            })?)
    } else {
        request.body(body)
    };
    remote.send(request, rejected_lines).await?;
    println!("success");
    Ok(())
}

fn input(args: &WriteArgs) -> Result<Vec<u8>, WriteError> {
    if let Some(lines) = &args.line_protocol {
        return Ok(lines.clone().into_bytes());
    }
    let read_stdin = || {
        let mut stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(WriteError::NoInput);
        }
        let mut body = Vec::new();
        stdin
            .read_to_end(&mut body)
            .map_err(|source| WriteError::Read {
                what: "stdin".into(),
                source,
            })?;
        Ok(body)
    };
    match &args.file {
        Some(path) if path.as_os_str() == "-" => read_stdin(),
        Some(path) => std::fs::read(path).map_err(|source| WriteError::Read {
            what: path.display().to_string(),
            source,
        }),
        None => read_stdin(),
    }
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// The rejected lines of a `/api/v3/write_lp` error, one per line:
/// `line N: message` and the line itself.
fn rejected_lines(error: &serde_json::Value) -> Option<String> {
    let data = error.get("data")?.as_array()?;
    let lines: Vec<String> = data
        .iter()
        .map(|e| {
            let number = e.get("line_number").and_then(|n| n.as_u64()).unwrap_or(0);
            let message = e
                .get("error_message")
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            let original = e
                .get("original_line")
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            format!("line {number}: {message}\n    {original}")
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_lines_are_numbered_with_their_text() {
        let error = serde_json::json!({
            "error": "parsing failed for write_lp endpoint",
            "data": [
                {"original_line": "m x", "line_number": 2, "error_message": "column 3: no field"},
                {"original_line": "m,a= v=1", "line_number": 5, "error_message": "column 5: empty tag value"},
            ]
        });
        assert_eq!(
            rejected_lines(&error).unwrap(),
            "line 2: column 3: no field\n    m x\nline 5: column 5: empty tag value\n    m,a= v=1"
        );
        assert_eq!(rejected_lines(&serde_json::json!({"error": "x"})), None);
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"m v=1 1\n".repeat(10_000);
        let packed = gzip(&body).unwrap();
        assert!(packed.len() < body.len() / 10);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
