//! The README's examples, run as printed against a fresh server, so that the
//! README cannot drift from what inflow does. A fenced block after a
//! `<!-- readme-test: NAME -->` line is runnable: the `sh` and `python` blocks
//! run in order in one `bash` (a Python block through the test venv's
//! `python3`), in a directory whose `data/` is the server's data directory,
//! with `inflow` on the `PATH` and the server's port for `8086`. What each
//! prints is checked below; a `text` block after `<!-- readme-output: NAME -->`
//! is NAME's output as the README shows it, checked too (times masked).

use std::path::Path;
use std::process::Command;

use crate::clients::python;
use crate::harness::{Server, binary};

/// A runnable block: its name, language (`sh` or `python`) and code.
#[derive(Debug)]
struct Block {
    name: String,
    lang: String,
    code: String,
}

/// The fenced block right after each `<!-- KIND: NAME -->` line.
fn marked(readme: &str, kind: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    let prefix = format!("<!-- {kind}: ");
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        let lang = fence.strip_prefix("```").unwrap_or_else(|| {
            panic!("{kind} {name}: no fenced block after the marker: {fence:?}")
        });
        let mut code = String::new();
        for line in lines.by_ref() {
            if line == "```" {
                break;
            }
            code.push_str(line);
            code.push('\n');
        }
        blocks.push(Block {
            name: name.to_string(),
            lang: lang.to_string(),
            code,
        });
    }
    blocks
}

/// One bash script of every runnable block, each writing its stdout to
/// `<out>/<NAME>.out`.
fn script(blocks: &[Block], port: u16, out: &Path) -> String {
    let mut script = String::from("set -euo pipefail\n");
    for b in blocks {
        let code = b.code.replace("8086", &port.to_string());
        script.push_str("{\n");
        match b.lang.as_str() {
            "sh" => script.push_str(&code),
            "python" => script.push_str(&format!("python3 - <<'README_PY'\n{code}README_PY\n")),
            other => panic!("block {}: cannot run a {other:?} block", b.name),
        }
        script.push_str(&format!("}} > '{}/{}.out'\n", out.display(), b.name));
    }
    script
}

/// Times and tokens vary from run to run.
fn masked(text: &str) -> String {
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?").unwrap();
    let epoch = regex::Regex::new(r"\b1\d{18}\b").unwrap();
    let token = regex::Regex::new(r"\binflow_[A-Za-z0-9_-]{20,}").unwrap();
    let text = time.replace_all(text, "TIME");
    let text = epoch.replace_all(&text, "EPOCH");
    token.replace_all(&text, "TOKEN").into_owned()
}

/// What each runnable block must print (after [`masked`]).
fn check(name: &str, out: &str) {
    match name {
        "setup" | "write-curl" => assert_eq!(out, "", "{name}"),
        "write-cli" => assert_eq!(out, "success\nsuccess\n", "{name}"),
        "token-create" => assert_eq!(out, "TOKEN\n", "{name}"),
        "admin-cli" => assert_eq!(
            out,
            "home\tnone\t-\t-\t-\n\
             telegraf\t30d\t-\t-\t-\n\
             TOKEN\n\
             1\thome-rw\tdb:home:read,write\tcreated TIME\texpires never\n\
             2\ttelegraf\tdb:telegraf:write\tcreated TIME\texpires TIME\n",
            "{name}"
        ),
        "query-cli" => assert_eq!(
            out,
            "+---------+------+\n\
             | room    | temp |\n\
             +---------+------+\n\
             | kitchen | 72.0 |\n\
             +---------+------+\n\
             iox::measurement,time,temp\n\
             home,TIME,72.0\n",
            "{name}"
        ),
        "query-python" => assert_eq!(out, "hall 68.0\nkitchen 72.0\nliving 70.5\n", "{name}"),
        "query-curl" => assert_eq!(
            out,
            r#"[{"room":"hall","temp":68.0},{"room":"kitchen","temp":72.0},{"room":"living","temp":70.5}]"#,
            "{name}"
        ),
        "influx-shell" => assert_eq!(
            out,
            "name: home\ntags: room=hall\ntime                mean\n----                ----\nEPOCH 68\n\n\
             name: home\ntags: room=kitchen\ntime                mean\n----                ----\nEPOCH 72\n\n\
             name: home\ntags: room=living\ntime                mean\n----                ----\nEPOCH 70.5\n",
            "{name}"
        ),
        other => panic!("no check for the README's block {other:?}: add one here"),
    }
}

/// Every runnable block of the README, in order, against one fresh server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_examples_run_as_printed() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let blocks = marked(&readme, "readme-test");
    let names: Vec<&str> = blocks.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "setup",
            "write-cli",
            "write-curl",
            "token-create",
            "query-cli",
            "query-python",
            "query-curl",
            "influx-shell",
            "admin-cli",
        ],
        "the README's runnable blocks"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No token given: the server generates data/admin-token, as on a first start.
    let server = Server::start_with_env(&data, &[], &[]);
    let port: u16 = server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let bin_dir = Path::new(&binary()).parent().unwrap().to_path_buf();
    let venv_dir = python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        venv_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let outputs = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(script(&blocks, port, outputs.path()))
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("INFLOW_HOST")
        .env_remove("INFLOW_TOKEN")
        .env_remove("INFLOW_ADMIN_TOKEN")
        .env_remove("INFLOW_DATA_DIR")
        .env_remove("INFLOW_TLS_CA")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a README example failed ({}):\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let printed: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            let file = outputs.path().join(format!("{n}.out"));
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("block {n} did not run ({e}):\n{stdout}"));
            (n.to_string(), text)
        })
        .collect();
    let shown = marked(&readme, "readme-output");
    for (name, text) in &printed {
        let text = masked(text);
        check(name, &text);
        if let Some(b) = shown.iter().find(|b| &b.name == name) {
            assert_eq!(masked(&b.code), text, "the README shows what {name} prints");
        }
    }
    assert!(server.stop().success());
}
