//! The `inflow` command: `serve`, `write`, `query`, `database …`,
//! `table list`, `token …`, `bench write`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inflow::admin::DatabaseSettings;
use inflow::admin::client::{Target, TargetArgs};
use inflow::catalog::Permission;
use inflow::serve::{LogFormat, ServeArgs};

#[cfg(all(not(target_env = "msvc"), not(miri)))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Write line protocol (an argument, --file or stdin) to a running server.
    #[command(visible_alias = "w")]
    Write(inflow::remote::write::WriteArgs),
    /// Query a running server with SQL or InfluxQL; prints a table, JSON or CSV.
    #[command(visible_alias = "q")]
    Query(inflow::remote::query::QueryArgs),
    /// Manage databases.
    #[command(subcommand)]
    Database(DatabaseCommand),
    /// List tables and their columns.
    #[command(subcommand)]
    Table(TableCommand),
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Load benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum DatabaseCommand {
    /// Create a database (it must not exist).
    Create {
        name: String,
        /// Retention period, e.g. 30d or 12h; none by default.
        #[arg(long, default_value = "none")]
        retention: String,
        #[command(flatten)]
        quotas: QuotaArgs,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the databases and their retention periods.
    List {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Change a database's retention period (`none` removes it) or quotas.
    Update {
        name: String,
        #[arg(long)]
        retention: Option<String>,
        #[command(flatten)]
        quotas: QuotaArgs,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete a database: at once for writes and queries; its data is purged
    /// after the server's --purge-grace.
    Delete {
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// A database's own quotas (0: the server's).
#[derive(Debug, Clone, clap::Args)]
struct QuotaArgs {
    /// Most tables.
    #[arg(long)]
    max_tables: Option<usize>,
    /// Most columns per table, `time` included.
    #[arg(long)]
    max_columns: Option<usize>,
    /// Most series (tables × tag sets) with data inside the retention period.
    #[arg(long)]
    max_series: Option<usize>,
}

impl QuotaArgs {
    /// What a create or update sets: these quotas and `retention_period`.
    fn settings(&self, retention_period: Option<String>) -> DatabaseSettings {
        DatabaseSettings {
            retention_period,
            max_tables: self.max_tables,
            max_columns_per_table: self.max_columns,
            max_series: self.max_series,
        }
    }
}

#[derive(Debug, Subcommand)]
enum TableCommand {
    /// List a database's tables and their columns.
    List {
        #[arg(long)]
        database: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; prints it once, alone on the last line of stdout.
    Create {
        /// Database the token is for (created if missing).
        #[arg(long, required_unless_present = "admin")]
        database: Option<String>,
        /// Comma-separated: read, write.
        #[arg(long, value_delimiter = ',', default_value = "write")]
        permission: Vec<TokenPermission>,
        /// An operator token instead: every permission on every database.
        #[arg(long, conflicts_with = "database")]
        admin: bool,
        /// The token's name (unique; used to revoke it). Generated if empty.
        #[arg(long, alias = "description", default_value = "")]
        name: String,
        /// Lifetime, e.g. 90d; the token never expires by default.
        #[arg(long)]
        expiry: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Revoke a token by name (or id); every server stops taking it within
    /// its --catalog-refresh-interval.
    Revoke {
        name: String,
        #[command(flatten)]
        target: TargetArgs,
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

/// The stack of every runtime thread. Queries are planned and run on these
/// threads, and DataFusion recurses once per level of an expression: in a
/// debug build a 2 MiB stack (tokio's default) overflows at about 670 levels,
/// only 2.6 times the depth the parsers accept (`MAX_EXPR_DEPTH`,
/// `MAX_SQL_EXPR_DEPTH`: 256). 8 MiB gives ten times; it is address space,
/// touched only as deep as a thread goes.
const THREAD_STACK_BYTES: usize = 8 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
        .expect("tokio runtime starts");
    let mut telemetry = None;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let service = format!("inflow-{}", format!("{:?}", args.role).to_lowercase());
                let t = inflow::telemetry::init(args.log.format, &args.log.filter, &service);
                telemetry = Some(t);
                inflow::serve::run(*args).await.map_err(|e| e.to_string())
            }
            Command::Write(args) => {
                init_logging(LogFormat::Text, "warn");
                inflow::remote::write::run(args)
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Query(args) => {
                init_logging(LogFormat::Text, "warn");
                inflow::remote::query::run(args)
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Database(command) => {
                init_logging(LogFormat::Text, "warn");
                database(command).await
            }
            Command::Table(TableCommand::List { database, target }) => {
                init_logging(LogFormat::Text, "warn");
                let tables = Target::open(target).await?.tables(&database).await?;
                for t in tables {
                    let columns: Vec<String> = t
                        .columns
                        .iter()
                        .map(|c| format!("{}:{}", c.name, c.ty))
                        .collect();
                    println!("{}\t{}", t.table_name, columns.join(","));
                }
                Ok(())
            }
            Command::Token(command) => {
                init_logging(LogFormat::Text, "warn");
                token(command).await
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

async fn database(command: DatabaseCommand) -> Result<(), String> {
    match command {
        DatabaseCommand::Create {
            name,
            retention,
            quotas,
            target,
        } => {
            let settings = quotas.settings(Some(retention.clone()));
            Target::open(target)
                .await?
                .create_database(&name, &settings)
                .await?;
            eprintln!("created database {name} (retention {retention})");
        }
        DatabaseCommand::List { target } => {
            let quota = |q: Option<usize>| q.map_or("-".to_string(), |n| n.to_string());
            for db in Target::open(target).await?.databases().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    db.name,
                    db.retention_period,
                    quota(db.max_tables),
                    quota(db.max_columns_per_table),
                    quota(db.max_series)
                );
            }
        }
        DatabaseCommand::Update {
            name,
            retention,
            quotas,
            target,
        } => {
            let settings = quotas.settings(retention);
            if settings == DatabaseSettings::default() {
                return Err(
                    "nothing to update: give --retention, --max-tables, --max-columns or --max-series".into(),
                );
            }
            Target::open(target)
                .await?
                .update_database(&name, &settings)
                .await?;
            eprintln!("database {name} updated");
        }
        DatabaseCommand::Delete { name, target } => {
            Target::open(target).await?.delete_database(&name).await?;
            eprintln!("deleted database {name} (its data is purged after the grace period)");
        }
    }
    Ok(())
}

async fn token(command: TokenCommand) -> Result<(), String> {
    match command {
        TokenCommand::Create {
            database,
            permission,
            admin,
            name,
            expiry,
            target,
        } => {
            let permissions = match (admin, database) {
                (true, _) => vec![Permission::Admin],
                (false, Some(name)) => vec![Permission::database(
                    name,
                    permission.contains(&TokenPermission::Read),
                    permission.contains(&TokenPermission::Write),
                )],
                (false, None) => return Err("--database or --admin is required".into()),
            };
            let expiry = expiry
                .map(|e| {
                    humantime::parse_duration(&e).map_err(|err| format!("--expiry {e:?}: {err}"))
                })
                .transpose()?;
            let name = if name.is_empty() {
                // A random suffix: names are unique, to revoke by.
                let random = inflow::auth::generate_token();
                let suffix: String = random.chars().rev().take(8).collect();
                format!("token-{suffix}")
            } else {
                name
            };
            let made = Target::open(target)
                .await?
                .create_token(&name, permissions, expiry)
                .await?;
            eprintln!(
                "created token {} \"{}\" (shown once; store it now):",
                made.id, made.name
            );
            println!("{}", made.token);
        }
        TokenCommand::List { target } => {
            for t in Target::open(target).await?.tokens().await? {
                println!(
                    "{}\t{}\t{}\tcreated {}\texpires {}",
                    t.id,
                    t.name,
                    t.permissions.join(" "),
                    t.created_at,
                    t.expires_at.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::Revoke { name, target } => {
            Target::open(target).await?.revoke_token(&name).await?;
            eprintln!("revoked token {name}");
        }
    }
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
