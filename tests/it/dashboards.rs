//! What dashboards are given: the Grafana board's every query, with Grafana's macros and
//! variables expanded as Grafana expands them, run against a database seeded with the example
//! bucket (and a failed report); and compose.yaml, whose mounts must exist and provision the
//! files of `dashboards/grafana/`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool, Row};
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The time range the board is looked at with: the example bucket's months.
const FROM: &str = "2016-12-01T00:00:00Z";
const TO: &str = "2017-02-28T23:59:59Z";

/// `'a','b'`: a multi-value variable as Grafana writes it into SQL.
fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

/// `arg1, arg2` of the macro call starting at `text[start..]` (just after its `(`), and where
/// the call ends.
fn macro_args(text: &str, start: usize) -> (Vec<String>, usize) {
    let mut depth = 0;
    for (i, c) in text[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                let args = text[start..start + i]
                    .split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect();
                return (args, start + i + 1);
            }
            ')' => depth -= 1,
            _ => {}
        }
    }
    panic!("unclosed macro in {text}");
}

fn seconds(interval: &str) -> u64 {
    let (number, unit) = interval.split_at(interval.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("interval {interval}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => panic!("unit {other}"),
    }
}

/// Grafana's PostgreSQL macros, as its data source rewrites them.
fn expand_macros(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let name_end = rest[at..].find('(').map(|i| at + i);
        let Some(open) = name_end else {
            panic!("macro without arguments in {sql}");
        };
        let name = &rest[at + 3..open];
        let (args, end) = macro_args(rest, open + 1);
        let expanded = match (name, args.as_slice()) {
            ("timeFilter", [column]) => format!("{column} BETWEEN '{FROM}' AND '{TO}'"),
            ("timeFrom", []) => format!("'{FROM}'"),
            ("timeTo", []) => format!("'{TO}'"),
            ("timeGroup", [column, interval]) => {
                let s = seconds(interval);
                format!("floor(extract(epoch from {column})/{s})*{s}")
            }
            ("timeGroupAlias", [column, interval]) => {
                let s = seconds(interval);
                format!("floor(extract(epoch from {column})/{s})*{s} AS \"time\"")
            }
            (other, _) => panic!("macro $__{other} is not one the test knows"),
        };
        out.push_str(&expanded);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A board variable: its values, and what Grafana writes for "All" (`allValue`, verbatim), if
/// not every value quoted.
struct Variable {
    name: String,
    values: Vec<String>,
    all_value: Option<String>,
}

/// How the variables are set: at "All" (the board's default), or each value picked.
#[derive(Clone, Copy, Debug)]
enum Chosen {
    All,
    EachValue,
}

/// `$name` and `${name}` replaced by the variables' values (longest names first).
fn expand_variables(sql: &str, variables: &[Variable], chosen: Chosen) -> String {
    let mut sorted: Vec<&Variable> = variables.iter().collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.name.len()));
    let mut sql = sql.to_owned();
    for variable in sorted {
        let value = match (chosen, &variable.all_value) {
            (Chosen::All, Some(all)) => all.clone(),
            _ => quoted(&variable.values),
        };
        let name = &variable.name;
        sql = sql.replace(&format!("${{{name}}}"), &value);
        sql = sql.replace(&format!("${name}"), &value);
    }
    sql
}

fn expand(sql: &str, variables: &[Variable], chosen: Chosen) -> String {
    expand_macros(&expand_variables(sql, variables, chosen))
}

/// The example bucket ingested, and a broken report beside it.
async fn seeded() -> (TestDatabase, PgPool) {
    let bucket = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("examples/bucket")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), bucket.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(
        bucket
            .path()
            .join("111111111111-aws-billing-detailed-line-items-2017-03.csv.zip"),
        b"PK\x03\x04 this is not a zip member",
    )
    .unwrap();
    let db = TestDatabase::new();
    let once = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .args(["once", "--config", "config/example.toml", "--source"])
        .arg(format!("dir:{}", bucket.path().display()))
        .current_dir(repo())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&once.stdout);
    assert!(stdout.contains("3 ingested, 1 failed"), "{stdout}");
    let pool = PgPool::connect(&db.url).await.unwrap();
    (db, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_query_runs_on_a_seeded_database_and_returns_rows() {
    let board: Value = serde_json::from_slice(
        &std::fs::read(repo().join("dashboards/grafana/dbr-ingest.json")).unwrap(),
    )
    .unwrap();
    let (db, pool) = seeded().await;
    let run = |sql: String| {
        let pool = pool.clone();
        async move {
            sqlx::query(AssertSqlSafe(sql.clone()))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        }
    };

    // A query's rows as JSON text, sorted.
    let rows_as_text = |sql: String| async move {
        let sql = format!(
            "SELECT to_jsonb(q)::text FROM ({}) q",
            sql.trim_end().trim_end_matches(';')
        );
        let mut rows: Vec<String> = run(sql)
            .await
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        rows.sort();
        rows
    };

    // Each variable's query with the ones before it at "All", as the board loads. "All" is
    // written as the variable's column (`integration IN (integration)`): a filter that holds
    // for every row, however many values there are.
    let mut variables: Vec<Variable> = Vec::new();
    for variable in board["templating"]["list"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap().to_owned();
        assert_eq!(variable["datasource"]["uid"], "dbr-ingest", "{name}");
        let sql = expand(variable["query"].as_str().unwrap(), &variables, Chosen::All);
        let values: Vec<String> = run(sql)
            .await
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        assert!(!values.is_empty(), "variable {name} has no values");
        let all_value = variable["allValue"].as_str().map(str::to_owned);
        if variable["includeAll"] == true {
            assert!(all_value.is_some(), "{name} writes every value for All");
        }
        variables.push(Variable {
            name,
            values,
            all_value,
        });
    }
    let names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["integration", "payer", "account", "service", "tag_key"]
    );

    let contract: Vec<&str> = dbr_ingest::store::contract_view_names().collect();
    let panels = board["panels"].as_array().unwrap();
    assert!(panels.len() >= 11);
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let raw = target["rawSql"].as_str().unwrap();
            // Only the contract views: every FROM and JOIN names one.
            for word in ["FROM ", "JOIN "] {
                for (at, _) in raw.match_indices(word) {
                    let relation: String = raw[at + word.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        contract.contains(&relation.as_str()),
                        "{title} reads {relation}, not a contract view"
                    );
                }
            }
            // The same rows whether "All" is chosen or every value picked.
            let all = rows_as_text(expand(raw, &variables, Chosen::All)).await;
            let each = rows_as_text(expand(raw, &variables, Chosen::EachValue)).await;
            assert!(!all.is_empty(), "panel {title} returns no rows");
            assert_eq!(all, each, "panel {title}");
        }
    }
    pool.close().await;
    db.drop_database().await;
}

/// A YAML file of the repository.
fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .remove(0)
}

#[test]
fn compose_mounts_what_exists_and_provisions_the_board() {
    let compose = yaml("compose.yaml");
    let services = &compose["services"];
    for service in ["postgres", "dbr-ingest", "grafana"] {
        assert!(!services[service].is_badvalue(), "service {service}");
    }
    let mut mounts: Vec<(PathBuf, String)> = Vec::new();
    for (name, service) in services.as_hash().unwrap() {
        for volume in service["volumes"].as_vec().into_iter().flatten() {
            let volume = volume.as_str().unwrap();
            let mut parts = volume.split(':');
            let (host, target) = (parts.next().unwrap(), parts.next().unwrap());
            let host = repo().join(host);
            assert!(
                host.exists(),
                "{name:?} mounts {volume}: {} is missing",
                host.display()
            );
            mounts.push((host, target.to_owned()));
        }
    }
    let mounted = |target: &str| {
        mounts
            .iter()
            .find(|(_, t)| t == target)
            .map(|(host, _)| host.canonicalize().unwrap())
            .unwrap_or_else(|| panic!("nothing is mounted at {target}"))
    };
    let grafana = repo().join("dashboards/grafana").canonicalize().unwrap();
    assert_eq!(
        mounted("/etc/grafana/provisioning/datasources"),
        grafana.join("provisioning/datasources")
    );
    assert_eq!(
        mounted("/etc/grafana/provisioning/dashboards"),
        grafana.join("provisioning/dashboards")
    );
    assert_eq!(
        mounted("/data/bucket"),
        repo().join("examples/bucket").canonicalize().unwrap()
    );

    // The provider reads the folder the board is mounted in; the data source is the board's.
    let providers = yaml("dashboards/grafana/provisioning/dashboards/dbr-ingest.yaml");
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(mounted(path), grafana);
    assert!(grafana.join("dbr-ingest.json").exists());
    let home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .unwrap();
    assert_eq!(home, format!("{path}/dbr-ingest.json"));
    let sources = yaml("dashboards/grafana/provisioning/datasources/dbr-ingest.yaml");
    let source = &sources["datasources"][0];
    let board: Value =
        serde_json::from_slice(&std::fs::read(grafana.join("dbr-ingest.json")).unwrap()).unwrap();
    for panel in board["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"].as_str(), source["uid"].as_str());
        assert_eq!(
            panel["datasource"]["type"].as_str(),
            source["type"].as_str()
        );
    }
    assert_eq!(source["jsonData"]["database"].as_str(), Some("dbr_ingest"));
    let url = services["dbr-ingest"]["environment"]["DATABASE_URL"]
        .as_str()
        .unwrap();
    assert!(url.ends_with("@postgres:5432/dbr_ingest"), "{url}");
    assert_eq!(source["url"].as_str(), Some("postgres:5432"));
}
