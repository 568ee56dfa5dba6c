//! The `inflow` command: `serve`, `token create`, `bench write`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inflow::auth::new_token_record;
use inflow::catalog::{Catalog, Permission};
use inflow::serve::{LogFormat, ServeArgs};
use inflow::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "inflow",
    version,
    about = "InfluxDB-compatible line protocol ingest service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (every role in one process by default).
    Serve(Box<ServeArgs>),
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Load benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; prints it once, alone on the last line of stdout.
    Create {
        /// Local object store root of the server.
        #[arg(long, env = "INFLOW_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database the token is for (created if missing).
        #[arg(long, required_unless_present = "admin")]
        database: Option<String>,
        /// Comma-separated: read, write.
        #[arg(long, value_delimiter = ',', default_value = "write")]
        permission: Vec<TokenPermission>,
        /// An operator token instead: every permission on every database.
        #[arg(long, conflicts_with = "database")]
        admin: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TokenPermission {
    Read,
    Write,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Send gzip line protocol batches to a v2 write endpoint and report throughput.
    Write(inflow::bench::WriteBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let mut telemetry = None;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let service = format!("inflow-{}", format!("{:?}", args.role).to_lowercase());
                let t = inflow::telemetry::init(args.log_format, &args.log_filter, &service);
                telemetry = Some(t);
                inflow::serve::run(*args).await.map_err(|e| e.to_string())
            }
            Command::Token(TokenCommand::Create {
                data_dir,
                database,
                permission,
                admin,
                description,
            }) => {
                init_logging(LogFormat::Text, "warn");
                create_token(data_dir, database, permission, admin, description).await
            }
            Command::Bench(BenchCommand::Write(args)) => {
                init_logging(LogFormat::Text, "warn");
                inflow::bench::run(args)
                    .await
                    .map(|report| print!("{report}"))
                    .map_err(|e| e.to_string())
            }
        }
    });
    // Outside the runtime's `block_on`, whose workers still drive the exporter.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inflow: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn create_token(
    data_dir: PathBuf,
    database: Option<String>,
    permission: Vec<TokenPermission>,
    admin: bool,
    description: String,
) -> Result<(), String> {
    let store = Store::local(&data_dir).map_err(|e| e.to_string())?;
    let catalog = Catalog::load(store).await.map_err(|e| e.to_string())?;
    let permissions = match (admin, database) {
        (true, _) => vec![Permission::Admin],
        (false, Some(name)) => vec![Permission::Database {
            name,
            read: permission.contains(&TokenPermission::Read),
            write: permission.contains(&TokenPermission::Write),
        }],
        (false, None) => return Err("--database or --admin is required".into()),
    };
    let (token, record) = new_token_record(permissions, description);
    let record = catalog
        .create_token(record)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("created token {} (shown once; store it now):", record.id);
    println!("{token}");
    Ok(())
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
