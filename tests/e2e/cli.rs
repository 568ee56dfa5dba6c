//! `inflow write` and `inflow query` against a running server, as an operator
//! uses them: line protocol from an argument, a file and stdin, answers in
//! every format checked byte for byte, the server's own errors with exit
//! status 1, and an `https://` server administered with `--tls-ca`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::clients::{python, script};
use crate::harness::{ADMIN_TOKEN, Server, binary};

/// Runs `inflow ARGS` with only `env` of inflow's variables set, `stdin` piped
/// in (else none).
fn inflow(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("INFLOW_HOST")
        .env_remove("INFLOW_TOKEN")
        .env_remove("INFLOW_ADMIN_TOKEN")
        .env_remove("INFLOW_DATABASE")
        .env_remove("INFLOW_TLS_CA")
        .env_remove("INFLOW_DATA_DIR")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("inflow runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input).expect("stdin written");
    }
    child.wait_with_output().expect("inflow exits")
}

/// Stdout of a command that must succeed.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exit code 1 and stderr of a command that must fail.
fn fails(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Writes from an argument, a file, `--file -` and plain stdin, then reads
/// them back with `inflow query` in every format and both languages, exactly.
/// A body past the server's `--max-request-bytes` gets through gzipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_query_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB on the wire, 10 MiB once gunzipped: only a gzipped body of the
    // big write below fits.
    let s = Server::start(
        dir.path(),
        &[
            "--max-request-bytes",
            "65536",
            "--max-decompressed-bytes",
            "10485760",
        ],
    );
    let env = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", ADMIN_TOKEN),
    ];
    let w = |args: &[&str], stdin: Option<&[u8]>| {
        let mut all = vec!["write", "--database", "home"];
        all.extend_from_slice(args);
        inflow(&all, &env, stdin)
    };
    assert_eq!(
        ok(w(
            &["--precision", "s", "home,room=kitchen temp=21.5 1700000000"],
            None
        )),
        "success\n"
    );
    let file = dir.path().join("points.lp");
    std::fs::write(
        &file,
        "home,room=living temp=20.0,hum=40i 1700000000\nhome,room=hall temp=19.0 1700000060\n",
    )
    .unwrap();
    ok(w(&["-p", "s", "--file", file.to_str().unwrap()], None));
    ok(w(
        &["-p", "s", "-f", "-"],
        Some(b"home,room=attic temp=15.5 1700000120\n"),
    ));
    // Plain stdin, nanoseconds guessed from the magnitude.
    ok(w(
        &[],
        Some(b"home,room=cellar temp=12.0 1700000180000000000\n"),
    ));
    // 2,000 lines, ~110 KiB: past the 64 KiB request limit unless gzipped.
    let big: String = (0..2000)
        .map(|i| format!("big,host=host-{i:04} usage_user={i}.5,usage_system=1i {i}\n"))
        .collect();
    assert!(big.len() > 100_000);
    ok(w(&[], Some(big.as_bytes())));

    let q = |args: &[&str], stdin: Option<&[u8]>| {
        let mut all = vec!["query", "--database", "home"];
        all.extend_from_slice(args);
        ok(inflow(&all, &env, stdin))
    };
    let sql = "SELECT room, temp, hum, time FROM home ORDER BY time, room";
    assert_eq!(
        q(&[sql], None),
        "\
+---------+------+-----+---------------------+
| room    | temp | hum | time                |
+---------+------+-----+---------------------+
| kitchen | 21.5 |     | 2023-11-14T22:13:20 |
| living  | 20.0 | 40  | 2023-11-14T22:13:20 |
| hall    | 19.0 |     | 2023-11-14T22:14:20 |
| attic   | 15.5 |     | 2023-11-14T22:15:20 |
| cellar  | 12.0 |     | 2023-11-14T22:16:20 |
+---------+------+-----+---------------------+
"
    );
    let two =
        "SELECT room, temp, hum, time FROM home WHERE room IN ('kitchen', 'living') ORDER BY room";
    assert_eq!(
        q(&["--format", "json", two], None),
        "[{\"room\":\"kitchen\",\"temp\":21.5,\"time\":\"2023-11-14T22:13:20\"},\
         {\"room\":\"living\",\"temp\":20.0,\"hum\":40,\"time\":\"2023-11-14T22:13:20\"}]\n"
    );
    assert_eq!(
        q(&["--format", "jsonl", two], None),
        "{\"room\":\"kitchen\",\"temp\":21.5,\"time\":\"2023-11-14T22:13:20\"}\n\
         {\"room\":\"living\",\"temp\":20.0,\"hum\":40,\"time\":\"2023-11-14T22:13:20\"}\n"
    );
    assert_eq!(
        q(&["--format", "csv", two], None),
        "room,temp,hum,time\nkitchen,21.5,,2023-11-14T22:13:20\nliving,20.0,40,2023-11-14T22:13:20\n"
    );
    // The query from a file, from stdin, and the answer into a file.
    let count = "SELECT count(*) AS n, sum(usage_system) AS s FROM big";
    let query_file = dir.path().join("count.sql");
    std::fs::write(&query_file, count).unwrap();
    let counted =
        "+------+------+\n| n    | s    |\n+------+------+\n| 2000 | 2000 |\n+------+------+\n";
    assert_eq!(q(&["-f", query_file.to_str().unwrap()], None), counted);
    assert_eq!(q(&[], Some(count.as_bytes())), counted);
    let answer = dir.path().join("answer.csv");
    assert_eq!(
        q(
            &["--format", "csv", "-o", answer.to_str().unwrap(), count],
            None
        ),
        ""
    );
    assert_eq!(
        std::fs::read_to_string(&answer).unwrap(),
        "n,s\n2000,2000\n"
    );
    // Parquet only into a file, with the answer's types.
    let parquet = dir.path().join("answer.parquet");
    assert_eq!(
        q(
            &["--format", "parquet", "-o", parquet.to_str().unwrap(), two],
            None
        ),
        ""
    );
    let file = bytes::Bytes::from(std::fs::read(&parquet).unwrap());
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let types: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            "room:Utf8",
            "temp:Float64",
            "hum:Int64",
            "time:Timestamp(ns)"
        ]
    );
    let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);
    let err = fails(inflow(
        &["query", "-d", "home", "--format", "parquet", count],
        &env,
        None,
    ));
    assert_eq!(
        err,
        "inflow: error: --format parquet writes a file: give it with --output\n"
    );
    // InfluxQL: one table, as InfluxDB 3 answers it.
    assert_eq!(
        q(
            &[
                "--language",
                "influxql",
                "SELECT temp FROM home WHERE room = 'hall' OR room = 'attic'"
            ],
            None
        ),
        "\
+------------------+---------------------+------+
| iox::measurement | time                | temp |
+------------------+---------------------+------+
| home             | 2023-11-14T22:14:20 | 19.0 |
| home             | 2023-11-14T22:15:20 | 15.5 |
+------------------+---------------------+------+
"
    );
    assert_eq!(
        q(
            &[
                "-l",
                "influxql",
                "--format",
                "json",
                "SELECT max(temp) FROM home GROUP BY room"
            ],
            None
        ),
        "[{\"iox::measurement\":\"home\",\"time\":\"2023-11-14T22:15:20\",\"room\":\"attic\",\"max\":15.5},\
         {\"iox::measurement\":\"home\",\"time\":\"2023-11-14T22:16:20\",\"room\":\"cellar\",\"max\":12.0},\
         {\"iox::measurement\":\"home\",\"time\":\"2023-11-14T22:14:20\",\"room\":\"hall\",\"max\":19.0},\
         {\"iox::measurement\":\"home\",\"time\":\"2023-11-14T22:13:20\",\"room\":\"kitchen\",\"max\":21.5},\
         {\"iox::measurement\":\"home\",\"time\":\"2023-11-14T22:13:20\",\"room\":\"living\",\"max\":20.0}]\n"
    );
    // An empty answer is an empty table.
    assert_eq!(
        q(&["SELECT * FROM home WHERE room = 'none'"], None),
        "++\n++\n"
    );
    assert!(s.stop().success());
}

/// A rejected line fails the command with the server's message, the line's
/// number and text, and exit status 1; without `--accept-partial` nothing of
/// the request is written, with it the good lines are. A wrong or missing
/// token, a bad query and a missing input say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_print_the_servers_error_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let env = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", ADMIN_TOKEN),
    ];
    let body = b"m,k=a v=1 1\nbad line\nm,k=b v=\"text\" 2\n";
    let err = fails(inflow(&["write", "-d", "db"], &env, Some(body)));
    assert_eq!(
        err,
        "inflow: error: 400 Bad Request: parsing failed for write_lp endpoint\n\
         line 2: column 9: field \"line\" has no '=' and value\n    bad line\n\
         line 3: column 7: field \"v\" is string but column \"v\" of table \"m\" is float\n    \
         m,k=b v=\"text\" 2\n"
    );
    let count = [
        "query",
        "-d",
        "db",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM m",
    ];
    // Nothing of it was written, not even the table.
    assert_eq!(
        fails(inflow(&count, &env, None)),
        "inflow: error: 404 Not Found: table \"m\" not found in database \"db\"\n"
    );
    let err = fails(inflow(
        &["write", "-d", "db", "--accept-partial"],
        &env,
        Some(body),
    ));
    assert!(
        err.starts_with(
            "inflow: error: 400 Bad Request: partial write of line protocol occurred\nline 2: "
        ),
        "{err}"
    );
    assert_eq!(ok(inflow(&count, &env, None)), "n\n1\n");

    let wrong = [("INFLOW_HOST", s.base.as_str()), ("INFLOW_TOKEN", "wrong")];
    assert_eq!(
        fails(inflow(&["write", "-d", "db", "m v=2 3"], &wrong, None)),
        "inflow: error: 401 Unauthorized: unauthorized access (the server does not take this \
         token: check --token or INFLOW_TOKEN)\n"
    );
    assert_eq!(
        fails(inflow(
            &["query", "-d", "db", "--host", &s.base, "SELECT 1"],
            &[],
            None
        )),
        "inflow: error: 401 Unauthorized: unauthorized access (no token given: set --token or \
         INFLOW_TOKEN)\n"
    );
    assert_eq!(
        fails(inflow(&["query", "-d", "db", "SELEC"], &env, None)),
        "inflow: error: 400 Bad Request: SQL error: ParserError(\"Expected: an SQL statement, \
         found: SELEC at Line: 1, Column: 1\")\n"
    );
    assert_eq!(
        fails(inflow(&["query", "-d", "nope", "SELECT 1"], &env, None)),
        "inflow: error: 404 Not Found: database \"nope\" not found\n"
    );
    // A terminal is not needed to see it: stdin closed and empty is no input.
    let err = fails(inflow(
        &["write", "-d", "db", "-f", "/nonexistent.lp"],
        &env,
        None,
    ));
    assert!(
        err.starts_with("inflow: error: reading /nonexistent.lp: "),
        "{err}"
    );
    // Sent in requests of 10 lines (170 bytes): line 57 stops the sixth,
    // after the five before it were written; its number is the input's.
    let lines: String = (1..=100)
        .map(|i| {
            let v = if i == 57 { "x" } else { "1" };
            format!("b,i={i:03} v={v} {}\n", 1000 + i)
        })
        .collect();
    let err = fails(inflow(
        &["write", "-d", "db", "--batch-bytes", "170"],
        &env,
        Some(lines.as_bytes()),
    ));
    assert_eq!(
        err,
        "inflow: error: 400 Bad Request: parsing failed for write_lp endpoint\n\
         line 57: column 11: invalid field value \"x\" for field \"v\"\n    b,i=057 v=x 1057\n\
         (lines 1 to 50 were written by earlier requests)\n"
    );
    assert_eq!(
        ok(inflow(
            &[
                "query",
                "-d",
                "db",
                "--format",
                "csv",
                "SELECT count(*) AS n, max(i) AS last FROM b"
            ],
            &env,
            None
        )),
        "n,last\n50,050\n"
    );
    // Nothing listening: the address and the cause.
    let err = fails(inflow(
        &[
            "query",
            "-d",
            "db",
            "--host",
            "http://127.0.0.1:1",
            "SELECT 1",
        ],
        &env,
        None,
    ));
    assert!(
        err.starts_with("inflow: error: http://127.0.0.1:1: ") && err.contains("onnect"),
        "{err}"
    );
    assert!(s.stop().success());
}

/// An `https://` server with a certificate from a CA of the test's own: every
/// `--host` command (write, query, database, token) works with `--tls-ca` or
/// `INFLOW_TLS_CA`, and fails without it, naming the unknown issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_hosts_are_trusted_with_tls_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let cert = certs.path().join("server.pem");
    let key = certs.path().join("server-key.pem");
    let ca = certs.path().join("ca.pem");
    let s = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let ca = ca.to_str().unwrap();
    let env = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", ADMIN_TOKEN),
    ];
    assert_eq!(
        ok(inflow(
            &[
                "write",
                "--tls-ca",
                ca,
                "-d",
                "tls",
                "-p",
                "s",
                "m,k=a v=1.5 1700000000"
            ],
            &env,
            None
        )),
        "success\n"
    );
    let with_ca_env = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", ADMIN_TOKEN),
        ("INFLOW_TLS_CA", ca),
    ];
    // `m` of database `tls` in `format`, as the token in `env` reads it.
    let query = |format: &str, env: &[(&str, &str)]| {
        let args = [
            "query",
            "-d",
            "tls",
            "--format",
            format,
            "SELECT k, v FROM m",
        ];
        ok(inflow(&args, env, None))
    };
    assert_eq!(query("csv", &with_ca_env), "k,v\na,1.5\n");
    let listed = ok(inflow(&["database", "list", "--tls-ca", ca], &env, None));
    assert!(listed.starts_with("tls\t"), "{listed}");
    let token = ok(inflow(
        &[
            "token",
            "create",
            "--database",
            "tls",
            "--permission",
            "read",
            "--name",
            "r",
        ],
        &with_ca_env,
        None,
    ));
    // The new read token reads, over TLS, and may not write.
    let reader = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", token.trim()),
        ("INFLOW_TLS_CA", ca),
    ];
    assert_eq!(query("jsonl", &reader), "{\"k\":\"a\",\"v\":1.5}\n");
    let err = fails(inflow(
        &["write", "-d", "tls", "m v=2 1700000001"],
        &reader,
        None,
    ));
    assert!(err.starts_with("inflow: error: 403 Forbidden: "), "{err}");

    // Without the CA: refused by the client, for every command.
    for args in [
        &["write", "-d", "tls", "m v=2 1700000001"][..],
        &["query", "-d", "tls", "SELECT 1"][..],
        &["database", "list"][..],
    ] {
        let err = fails(inflow(args, &env, None));
        assert!(
            err.starts_with(&format!("inflow: error: {}: ", s.base))
                && err.contains("UnknownIssuer"),
            "{args:?}: {err}"
        );
    }
    // Plain http:// against the TLS port gets no answer either.
    let plain = s.base.replace("https://", "http://");
    let err = fails(inflow(
        &["query", "-d", "tls", "--host", &plain, "SELECT 1"],
        &env,
        None,
    ));
    assert!(
        err.starts_with(&format!("inflow: error: {plain}: ")),
        "{err}"
    );
    // A CA file that is not one is refused before any request.
    let err = fails(inflow(
        &["database", "list", "--tls-ca", key.to_str().unwrap()],
        &env,
        None,
    ));
    assert!(err.contains("--tls-ca"), "{err}");
    assert!(s.stop().success());
}

fn make_certs(dir: &Path) {
    let made = Command::new(python())
        .arg(script("make_certs.py"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(made.success());
}
