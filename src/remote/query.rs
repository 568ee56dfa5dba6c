//! `inflow query`: SQL or InfluxQL against `/api/v3/query_sql` or
//! `/api/v3/query_influxql`, as `influxdb3 query` does. `json`, `jsonl`,
//! `csv` and `parquet` (into `--output` only) are the server's bytes, streamed
//! through as they come; `pretty` (the default) is a table drawn by Arrow's
//! pretty printer from the server's CSV.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use reqwest::Method;

use super::{Remote, RemoteError, ServerArgs};

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The database to query (InfluxQL may name it in the statement instead).
    #[arg(short = 'd', long, env = "INFLOW_DATABASE")]
    pub database: Option<String>,
    /// The query's language.
    #[arg(short = 'l', long, value_enum, default_value_t = Language::Sql)]
    pub language: Language,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    pub format: Format,
    /// Write the answer to this file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Read the query from this file (`-`: stdin).
    #[arg(short = 'f', long, conflicts_with = "query")]
    pub file: Option<PathBuf>,
    /// The query, quoted as one argument (else --file, else stdin).
    pub query: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Sql,
    Influxql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Jsonl,
    Csv,
    /// A Parquet file: needs --output.
    Parquet,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryCliError {
    #[error("no query: give it as an argument, with --file, or on stdin (stdin is a terminal)")]
    NoInput,
    #[error("--database is required for SQL")]
    NoDatabase,
    #[error("--format parquet writes a file: give it with --output")]
    ParquetNeedsOutput,
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the answer: {0}")]
    Output(#[source] std::io::Error),
    #[error("the server's CSV: {0}")]
    Csv(#[source] arrow::error::ArrowError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

pub async fn run(args: QueryArgs) -> Result<(), QueryCliError> {
    let text = input(&args)?;
    if args.language == Language::Sql && args.database.is_none() {
        return Err(QueryCliError::NoDatabase);
    }
    if args.format == Format::Parquet && args.output.is_none() {
        return Err(QueryCliError::ParquetNeedsOutput);
    }
    let remote = Remote::from_args(&args.server)?;
    let (path, wire) = (
        match args.language {
            Language::Sql => "/api/v3/query_sql",
            Language::Influxql => "/api/v3/query_influxql",
        },
        match args.format {
            Format::Pretty | Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        },
    );
    let mut body = serde_json::json!({"q": text, "format": wire});
    if let Some(db) = &args.database {
        body["db"] = db.clone().into();
    }
    let request = remote
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .body(body.to_string());
    let mut response = remote.send(request, &|_| None).await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(
                std::fs::File::create(path).map_err(|source| QueryCliError::Read {
                    what: path.display().to_string(),
                    source,
                })?,
            )
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let to_stdout = args.output.is_none();
    let cut = |source| {
        QueryCliError::Remote(RemoteError::Send {
            host: remote.base().to_string(),
            source,
        })
    };
    if args.format == Format::Pretty {
        let csv = response.bytes().await.map_err(cut)?;
        let table = pretty(&csv)?;
        writeln!(out, "{table}").map_err(QueryCliError::Output)?;
        return out.flush().map_err(QueryCliError::Output);
    }
    let mut last = b'\n';
    while let Some(chunk) = response.chunk().await.map_err(cut)? {
        if let Some(b) = chunk.last() {
            last = *b;
        }
        out.write_all(&chunk).map_err(QueryCliError::Output)?;
    }
    // JSON ends without a newline; a terminal's prompt should not follow it.
    if to_stdout && last != b'\n' {
        out.write_all(b"\n").map_err(QueryCliError::Output)?;
    }
    out.flush().map_err(QueryCliError::Output)
}

fn input(args: &QueryArgs) -> Result<String, QueryCliError> {
    let read = |what, source| QueryCliError::Read { what, source };
    let input = super::read_input(args.query.as_deref(), args.file.as_deref())
        .map_err(|super::ReadFailed { what, source }| read(what, source))?
        .ok_or(QueryCliError::NoInput)?;
    String::from_utf8(input.bytes).map_err(|_| {
        // In the words of `read_to_string`, which read it before.
        let invalid = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        );
        read(input.what, invalid)
    })
}

/// The server's CSV as a table. Every column is read as text: the CSV holds
/// the values as the server formatted them, which is what Arrow's printer
/// would show for the typed columns (nulls and empty strings both blank).
fn pretty(csv: &[u8]) -> Result<String, QueryCliError> {
    if csv.is_empty() {
        // No rows: the server sends no header either.
        return arrow::util::pretty::pretty_format_batches(&[])
            .map(|t| t.to_string())
            .map_err(QueryCliError::Csv);
    }
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (inferred, _) = format
        .infer_schema(csv, Some(0))
        .map_err(QueryCliError::Csv)?;
    let text: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), DataType::Utf8, true))
        .collect();
    let reader = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(text)))
        .with_format(format)
        .build(csv)
        .map_err(QueryCliError::Csv)?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(QueryCliError::Csv)?;
    arrow::util::pretty::pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .map_err(QueryCliError::Csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_draws_the_csv_as_a_table() {
        let csv = b"host,time,v\na,2026-01-01T00:00:00,1.5\n\"b,c\",2026-01-01T00:00:01,\n";
        assert_eq!(
            pretty(csv).unwrap(),
            "+------+---------------------+-----+\n\
             | host | time                | v   |\n\
             +------+---------------------+-----+\n\
             | a    | 2026-01-01T00:00:00 | 1.5 |\n\
             | b,c  | 2026-01-01T00:00:01 |     |\n\
             +------+---------------------+-----+"
        );
        assert_eq!(pretty(b"").unwrap(), "++\n++");
    }
}
