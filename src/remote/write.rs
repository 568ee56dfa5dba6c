//! `inflow write`: line protocol from an argument, a file or stdin, posted to
//! `/api/v3/write_lp` as `influxdb3 write` does. Input longer than
//! `--batch-bytes` goes in several requests of whole lines (as the v2 `influx
//! write` batches), so a file of any size fits the server's body limits. A
//! refused write prints the server's error with each rejected line's number
//! (in the whole input) and text.

use std::io::Write as _;
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
    /// Most bytes of line protocol per request, before gzip; longer input is
    /// sent in several requests of whole lines, in order, and a rejected line
    /// stops at its request (those before it are written). Keep it under the
    /// server's --max-decompressed-bytes.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_bytes: u64,
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
    let path = format!(
        "/api/v3/write_lp?{}",
        serde_urlencoded::to_string(&params).unwrap_or_default()
    );
    let limit = usize::try_from(args.batch_bytes).unwrap_or(usize::MAX);
    for batch in batches(&body, limit) {
        let request = remote
            .request(Method::POST, &path)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        let request = if batch.text.len() >= GZIP_FROM_BYTES {
            let packed = gzip(batch.text).map_err(|source| WriteError::Read {
                what: "the line protocol (gzip)".into(),
                source,
            })?;
            request.header(CONTENT_ENCODING, "gzip").body(packed)
        } else {
            request.body(batch.text.to_vec())
        };
        let first_line = batch.first_line;
        let detail = move |error: &serde_json::Value| rejected_lines(error, first_line);
        remote.send(request, &detail).await?;
    }
    println!("success");
    Ok(())
}

/// A request's worth of whole lines, and the number of its first line in the
/// whole input.
#[derive(Debug, PartialEq, Eq)]
struct Batch<'a> {
    text: &'a [u8],
    first_line: u64,
}

/// `body` cut after a newline into pieces of at most `limit` bytes (a longer
/// line is a piece of its own, for the server to judge). Empty input is one
/// empty piece, so the server answers for it as for any write.
fn batches(body: &[u8], limit: usize) -> Vec<Batch<'_>> {
    let mut out = Vec::new();
    let (mut start, mut first_line, mut line) = (0, 1, 1);
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        if end - start > limit && pos > start {
            out.push(Batch {
                text: &body[start..pos],
                first_line,
            });
            (start, first_line) = (pos, line);
        }
        pos = end;
        line += 1;
    }
    if start < body.len() || out.is_empty() {
        out.push(Batch {
            text: &body[start..],
            first_line,
        });
    }
    out
}

fn input(args: &WriteArgs) -> Result<Vec<u8>, WriteError> {
    let input = super::read_input(args.line_protocol.as_deref(), args.file.as_deref())
        .map_err(|super::ReadFailed { what, source }| WriteError::Read { what, source })?;
    Ok(input.ok_or(WriteError::NoInput)?.bytes)
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// The rejected lines of a `/api/v3/write_lp` error, one per line:
/// `line N: message` (N in the whole input, the request's first line being
/// `first_line`) and the line itself; after a first request, what was written.
fn rejected_lines(error: &serde_json::Value, first_line: u64) -> Option<String> {
    let data = error.get("data").and_then(|d| d.as_array());
    let lines: Vec<String> = data
        .into_iter()
        .flatten()
        .map(|e| {
            let number = e
                .get("line_number")
                .and_then(|n| n.as_u64())
                .map_or(0, |n| n + first_line - 1);
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
    let mut text = lines.join("\n");
    if first_line > 1 {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "(lines 1 to {} were written by earlier requests)",
            first_line - 1
        ));
    }
    (!text.is_empty()).then_some(text)
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
            rejected_lines(&error, 1).unwrap(),
            "line 2: column 3: no field\n    m x\nline 5: column 5: empty tag value\n    m,a= v=1"
        );
        assert_eq!(
            rejected_lines(&error, 11).unwrap(),
            "line 12: column 3: no field\n    m x\nline 15: column 5: empty tag value\n    m,a= v=1\n\
             (lines 1 to 10 were written by earlier requests)"
        );
        let plain = serde_json::json!({"error": "x"});
        assert_eq!(rejected_lines(&plain, 1), None);
        assert_eq!(
            rejected_lines(&plain, 3).unwrap(),
            "(lines 1 to 2 were written by earlier requests)"
        );
    }

    #[test]
    fn batches_are_whole_lines_within_the_limit() {
        let text = |b: &[Batch]| -> Vec<(String, u64)> {
            b.iter()
                .map(|b| (String::from_utf8_lossy(b.text).into_owned(), b.first_line))
                .collect()
        };
        let body = b"a 1\nbb 2\nccc 3\nd 4";
        assert_eq!(
            text(&batches(body, 100)),
            [("a 1\nbb 2\nccc 3\nd 4".into(), 1)]
        );
        assert_eq!(
            text(&batches(body, 9)),
            [("a 1\nbb 2\n".into(), 1), ("ccc 3\nd 4".into(), 3)]
        );
        // A line longer than the limit goes alone.
        assert_eq!(
            text(&batches(body, 4)),
            [
                ("a 1\n".into(), 1),
                ("bb 2\n".into(), 2),
                ("ccc 3\n".into(), 3),
                ("d 4".into(), 4)
            ]
        );
        assert_eq!(text(&batches(b"", 4)), [(String::new(), 1)]);
        let joined: Vec<u8> = batches(body, 5)
            .iter()
            .flat_map(|b| b.text.to_vec())
            .collect();
        assert_eq!(joined, body);
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
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
