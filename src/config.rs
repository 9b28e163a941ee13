//! Settings: a TOML file (`config/default.toml` documents every key), then environment variables
//! for containers. The database URL is a secret: it never appears in `Debug` output or logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::Monitored;
use crate::report::aggregate::MemoryBudget;

const DEFAULT_FILE: &str = "config/default.toml";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/dbr_ingest";

/// A configuration that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Where reports are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSetting {
    /// The configured S3 bucket.
    S3,
    /// A local directory laid out like a bucket (demos, resellers' extracts).
    Dir(PathBuf),
}

impl SourceSetting {
    pub fn parse(text: &str) -> Result<SourceSetting, String> {
        match text.split_once(':') {
            _ if text == "s3" => Ok(SourceSetting::S3),
            Some(("dir", path)) if !path.is_empty() => Ok(SourceSetting::Dir(PathBuf::from(path))),
            _ => Err(format!(
                "source {text:?} is neither \"s3\" nor \"dir:PATH\""
            )),
        }
    }
}

/// S3 access beyond what the AWS SDK's own environment (`AWS_REGION`, `AWS_ENDPOINT_URL`,
/// credentials, `AWS_PROFILE`, web identity) provides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Only keys under this prefix are listed.
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Path-style URLs (`http://host/bucket/key`), as most S3-compatible servers want.
    pub force_path_style: bool,
    /// A role in the bucket owner's account to assume through STS, on top of the default
    /// credential chain.
    pub assume_role: Option<AssumeRole>,
    /// How long S3 may send nothing (no answer, or no byte of an object) before the request
    /// fails and is tried again: a stalled connection cannot hang a poll.
    pub read_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeRole {
    pub role_arn: String,
    /// The external ID the role's trust policy requires, if any.
    pub external_id: Option<String>,
    pub session_name: String,
}

#[derive(Debug)]
pub struct Settings {
    pub database_url: SecretString,
    pub source: SourceSetting,
    pub s3: S3Settings,
    /// `None` when the file and the environment name no account: the `monitored_accounts`
    /// table must then name some.
    pub monitored: Option<Monitored>,
    pub poll_interval: Duration,
    /// Reports read at the same time in one poll.
    pub concurrency: usize,
    /// What the daily sums of all reports being read may take in memory together, and where
    /// they go beyond it.
    pub memory_budget: MemoryBudget,
    /// How long `run` waits for connections to close after SIGTERM.
    pub shutdown_grace: Duration,
    /// Where `run` serves `/healthz`, `/readyz` and `/metrics`.
    pub http_addr: SocketAddr,
    /// Where `run` serves the status page, which shows costs: local unless set.
    pub status_addr: SocketAddr,
    /// JSON lines instead of human-readable logs.
    pub json_logs: bool,
    /// The Cost and Usage Report to read, when the bucket has several for one payer.
    pub report_name: Option<String>,
}

/// The file's layout; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    database_url: Option<String>,
    source: Option<String>,
    monitored_accounts: Option<MonitoredAccounts>,
    poll_interval: Option<String>,
    concurrency: Option<usize>,
    memory_budget: Option<String>,
    temp_dir: Option<String>,
    shutdown_grace: Option<String>,
    http_addr: Option<String>,
    status_addr: Option<String>,
    log_format: Option<String>,
    report_name: Option<String>,
    #[serde(default)]
    s3: S3File,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3File {
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    force_path_style: Option<bool>,
    role_arn: Option<String>,
    external_id: Option<String>,
    role_session_name: Option<String>,
    read_timeout: Option<String>,
}

/// `"*"` or a list of account IDs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MonitoredAccounts {
    Text(String),
    List(Vec<String>),
}

impl Settings {
    /// Reads `file` (or `DBR_CONFIG`, or `config/default.toml` when it exists), then the
    /// environment through `env` (the process environment, or a map in tests).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let env = non_empty(env);
        let path = file
            .map(Path::to_path_buf)
            .or_else(|| env("DBR_CONFIG").map(PathBuf::from));
        let parsed: File = match &path {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_FILE).exists() => read_file(Path::new(DEFAULT_FILE))?,
            None => File::default(),
        };
        for variable in crate::secrets::SECRET_VARIABLES {
            if let Some(secret) = env(variable) {
                crate::secrets::register(&secret);
            }
        }
        for variable in crate::secrets::ENDPOINT_VARIABLES {
            if let Some(endpoint) = env(variable) {
                crate::secrets::register_endpoint(&endpoint);
            }
        }
        let settings = Settings::from_layers(parsed, env)?;
        crate::secrets::register_database_url(settings.database_url.expose_secret());
        if let Some(endpoint) = &settings.s3.endpoint_url {
            crate::secrets::register_endpoint(endpoint);
        }
        Ok(settings)
    }

    fn from_layers(
        file: File,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let env = non_empty(env);
        let pick = |var: &str, from_file: Option<String>| {
            env(var).or(from_file.filter(|value| !value.trim().is_empty()))
        };
        let database_url =
            pick("DATABASE_URL", file.database_url).unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let source = match pick("DBR_SOURCE", file.source) {
            Some(text) => SourceSetting::parse(&text).map_err(ConfigError)?,
            None => SourceSetting::S3,
        };
        let force_path_style = match env("DBR_S3_FORCE_PATH_STYLE") {
            Some(text) => parse_bool(&text).ok_or_else(|| {
                ConfigError(format!(
                    "DBR_S3_FORCE_PATH_STYLE={text:?} is not true or false"
                ))
            })?,
            None => file.s3.force_path_style.unwrap_or(false),
        };
        let assume_role = pick("DBR_ROLE_ARN", file.s3.role_arn).map(|role_arn| AssumeRole {
            role_arn,
            external_id: pick("DBR_EXTERNAL_ID", file.s3.external_id),
            session_name: pick("DBR_ROLE_SESSION_NAME", file.s3.role_session_name)
                .unwrap_or_else(|| "dbr-ingest".into()),
        });
        let s3 = S3Settings {
            bucket: pick("DBR_BUCKET", file.s3.bucket).unwrap_or_default(),
            prefix: pick("DBR_PREFIX", file.s3.prefix).unwrap_or_default(),
            region: pick("DBR_S3_REGION", file.s3.region),
            endpoint_url: pick("DBR_S3_ENDPOINT_URL", file.s3.endpoint_url),
            force_path_style,
            assume_role,
            read_timeout: READ_TIMEOUT.parse(pick("DBR_S3_READ_TIMEOUT", file.s3.read_timeout))?,
        };
        let monitored = match env("DBR_MONITORED_ACCOUNTS") {
            Some(text) => Some(monitored_from_text(&text)?),
            None => match file.monitored_accounts {
                Some(MonitoredAccounts::Text(text)) if !text.trim().is_empty() => {
                    Some(monitored_from_text(&text)?)
                }
                Some(MonitoredAccounts::List(ids)) if !ids.is_empty() => {
                    Some(monitored_from_text(&ids.join(","))?)
                }
                _ => None,
            },
        };
        let poll_interval = POLL_INTERVAL.parse(pick("DBR_POLL_INTERVAL", file.poll_interval))?;
        let shutdown_grace =
            SHUTDOWN_GRACE.parse(pick("DBR_SHUTDOWN_GRACE", file.shutdown_grace))?;
        let concurrency = match env("DBR_CONCURRENCY") {
            Some(text) => text.trim().parse().map_err(|_| {
                ConfigError(format!("DBR_CONCURRENCY={text:?} is not a whole number"))
            })?,
            None => file.concurrency.unwrap_or(2),
        };
        if !CONCURRENCY.contains(&concurrency) {
            return Err(ConfigError(format!(
                "concurrency {concurrency} is outside {} to {}",
                CONCURRENCY.start(),
                CONCURRENCY.end()
            )));
        }
        let memory_budget = MemoryBudget {
            bytes: parse_memory_budget(pick("DBR_MEMORY_BUDGET", file.memory_budget))?,
            temp_dir: pick("DBR_TEMP_DIR", file.temp_dir)
                .map_or_else(std::env::temp_dir, PathBuf::from),
        };
        let least = concurrency * MemoryBudget::SHARE_FLOOR;
        if memory_budget.bytes < least {
            return Err(ConfigError(format!(
                "memory budget {} MiB is too small for concurrency {concurrency}: each report \
                 being read needs at least {} MiB, so at least {} MiB (or a lower concurrency)",
                memory_budget.bytes >> 20,
                MemoryBudget::SHARE_FLOOR >> 20,
                least >> 20
            )));
        }
        let address = |what: &str, text: String| {
            text.parse::<SocketAddr>()
                .map_err(|_| ConfigError(format!("{what} {text:?} is not IP:PORT")))
        };
        let http_addr = address(
            "HTTP address",
            pick("DBR_HTTP_ADDR", file.http_addr).unwrap_or_else(|| "0.0.0.0:9187".into()),
        )?;
        let status_addr = address(
            "status page address",
            pick("DBR_STATUS_ADDR", file.status_addr).unwrap_or_else(|| "127.0.0.1:9188".into()),
        )?;
        if status_addr == http_addr {
            return Err(ConfigError(format!(
                "the status page and the probes cannot share the address {http_addr}"
            )));
        }
        let json_logs = match pick("DBR_LOG_FORMAT", file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "log format {other:?} is neither text nor json"
                )));
            }
        };
        let report_name = pick("DBR_REPORT_NAME", file.report_name)
            .filter(|name| !name.is_empty())
            .map(|name| crate::domain::report_name(&name).map_err(ConfigError))
            .transpose()?;
        Ok(Settings {
            report_name,
            database_url: SecretString::from(database_url),
            source,
            s3,
            monitored,
            poll_interval,
            concurrency,
            memory_budget,
            shutdown_grace,
            http_addr,
            status_addr,
            json_logs,
        })
    }

    /// The database URL without its passwords, for messages.
    pub fn database_display(&self) -> String {
        crate::secrets::display_database_url(self.database_url.expose_secret())
    }
}

/// An empty variable is no variable, for every key: `DBR_BUCKET=` leaves the file's bucket in
/// force, as `DBR_CONCURRENCY=` leaves its concurrency.
fn non_empty(env: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |name| env(name).filter(|value| !value.trim().is_empty())
}

/// A duration setting: its name in messages, its default and the range it must lie in.
struct DurationSetting {
    what: &'static str,
    default: &'static str,
    min: Duration,
    max: Duration,
}

/// Below ten seconds a poll would list the bucket without pause; AWS rewrites a report a few
/// times a day.
const POLL_INTERVAL: DurationSetting = DurationSetting {
    what: "poll interval",
    default: "30m",
    min: Duration::from_secs(10),
    max: Duration::from_secs(7 * 24 * 3600),
};
const SHUTDOWN_GRACE: DurationSetting = DurationSetting {
    what: "shutdown grace",
    default: "30s",
    min: Duration::from_secs(1),
    max: Duration::from_secs(600),
};
const READ_TIMEOUT: DurationSetting = DurationSetting {
    what: "read timeout",
    default: "60s",
    min: Duration::from_secs(1),
    max: Duration::from_secs(3600),
};
/// Reports read at once; each holds a database connection and its share of the memory budget.
const CONCURRENCY: std::ops::RangeInclusive<usize> = 1..=32;

impl DurationSetting {
    fn parse(&self, text: Option<String>) -> Result<Duration, ConfigError> {
        let text = text.unwrap_or_else(|| self.default.into());
        let range = || {
            format!(
                "{} to {}",
                humantime::format_duration(self.min),
                humantime::format_duration(self.max)
            )
        };
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            ConfigError(format!(
                "{} {text:?}: {e} (write it like 30m, 1h or 90s; from {})",
                self.what,
                range()
            ))
        })?;
        if duration < self.min || duration > self.max {
            return Err(ConfigError(format!(
                "{} {text:?} is outside the allowed range, {}",
                self.what,
                range()
            )));
        }
        Ok(duration)
    }
}

/// The memory budget's default and range: below 256 KiB sums would be written out every few
/// hundred keys.
const MEMORY_BUDGET_DEFAULT: usize = 128 << 20;
const MEMORY_BUDGET: std::ops::RangeInclusive<usize> = MemoryBudget::SHARE_FLOOR..=(64 << 30);

/// `64MiB`, `512 KiB`, `1GiB`, `1000000` (bytes); KB, MB and GB are read as their binary
/// counterparts, as `docker` and Kubernetes users write them loosely.
fn parse_memory_budget(text: Option<String>) -> Result<usize, ConfigError> {
    let Some(text) = text else {
        return Ok(MEMORY_BUDGET_DEFAULT);
    };
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => Some(0),
        "k" | "kb" | "kib" => Some(10),
        "m" | "mb" | "mib" => Some(20),
        "g" | "gb" | "gib" => Some(30),
        _ => None,
    };
    let bytes = number
        .parse::<usize>()
        .ok()
        .zip(shift)
        .and_then(|(number, shift)| number.checked_mul(1 << shift));
    let range = "4MiB to 64GiB";
    match bytes {
        Some(bytes) if MEMORY_BUDGET.contains(&bytes) => Ok(bytes),
        Some(_) => Err(ConfigError(format!(
            "memory budget {text:?} is outside the allowed range, {range}"
        ))),
        None => Err(ConfigError(format!(
            "memory budget {text:?} is not a size (write it like 64MiB or 1GiB; from {range})"
        ))),
    }
}

fn read_file(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError(format!("{}{}", path.display(), toml_error(&text, &e))))
}

/// Where a TOML error is and what it is, without the line itself: that line may hold the
/// database password.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let place = error.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
        format!(" line {line}, column {column}")
    });
    format!(
        "{}: {}",
        place.unwrap_or_default(),
        error.message().trim_end()
    )
}

fn monitored_from_text(text: &str) -> Result<Monitored, ConfigError> {
    Monitored::parse(text).map_err(|e| ConfigError(format!("monitored accounts: {e}")))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = toml::from_str(toml).map_err(|e| e.to_string())?;
        Settings::from_layers(file, |name| vars.get(name).cloned()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_report_name_is_checked_and_the_environment_wins() {
        let settings = load("report_name = \"daily\"\n", &[]).unwrap();
        assert_eq!(settings.report_name.as_deref(), Some("daily"));
        let settings = load(
            "report_name = \"daily\"\n",
            &[("DBR_REPORT_NAME", "hourly-2")],
        );
        assert_eq!(settings.unwrap().report_name.as_deref(), Some("hourly-2"));
        assert_eq!(load("", &[]).unwrap().report_name, None);
        let refused = load("", &[("DBR_REPORT_NAME", "cur/hourly")])
            .err()
            .unwrap();
        assert!(
            refused.contains("is not a Cost and Usage Report name"),
            "{refused}"
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = "database_url = \"postgres://a@db/x\"\nmonitored_accounts = [\"000000000001\"]\npoll_interval = \"1h\"\n[s3]\nbucket = \"b\"\nprefix = \"p/\"\n";
        let settings = load(
            file,
            &[
                ("DBR_BUCKET", "billing"),
                ("DBR_PREFIX", "dbr/"),
                ("DBR_MONITORED_ACCOUNTS", "013328811177, 000000000002"),
                ("DBR_POLL_INTERVAL", "90s"),
                ("DBR_CONCURRENCY", "3"),
                ("DBR_HTTP_ADDR", "127.0.0.1:9999"),
                ("DBR_LOG_FORMAT", "json"),
                ("DBR_S3_FORCE_PATH_STYLE", "true"),
                ("DATABASE_URL", "postgres://u:hunter2@h:5432/d"),
            ],
        )
        .unwrap();
        assert_eq!(settings.s3.bucket, "billing");
        assert_eq!(settings.s3.prefix, "dbr/");
        assert!(settings.s3.force_path_style);
        assert_eq!(settings.poll_interval, Duration::from_secs(90));
        assert_eq!(settings.concurrency, 3);
        assert_eq!(settings.http_addr, "127.0.0.1:9999".parse().unwrap());
        assert!(settings.json_logs);
        assert_eq!(
            settings.monitored,
            Some(Monitored::parse("013328811177,000000000002").unwrap())
        );
        assert_eq!(settings.database_display(), "postgres://u:***@h:5432/d");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn assume_role_settings() {
        let file = "[s3]\nbucket = \"b\"\nrole_arn = \"arn:aws:iam::123456789012:role/billing\"\n";
        let settings = load(file, &[("DBR_EXTERNAL_ID", "ext-42")]).unwrap();
        let role = settings.s3.assume_role.unwrap();
        assert_eq!(role.role_arn, "arn:aws:iam::123456789012:role/billing");
        assert_eq!(role.external_id.as_deref(), Some("ext-42"));
        assert_eq!(role.session_name, "dbr-ingest");
        assert_eq!(
            load("[s3]\nbucket = \"b\"\n", &[]).unwrap().s3.assume_role,
            None
        );
    }

    #[test]
    fn file_values_and_defaults() {
        let settings = load(
            "source = \"dir:examples/bucket\"\nmonitored_accounts = \"*\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            settings.source,
            SourceSetting::Dir("examples/bucket".into())
        );
        assert_eq!(settings.monitored, Some(Monitored::All));
        assert_eq!(settings.poll_interval, Duration::from_secs(30 * 60));
        assert_eq!(settings.database_display(), DEFAULT_DATABASE_URL);
        let none = load("source = \"dir:x\"\n", &[]).unwrap();
        assert_eq!(none.monitored, None);
    }

    #[test]
    fn mistakes_are_explained() {
        let cases = [
            (
                "[s3]\nbucket = \"b\"\n",
                vec![("DBR_POLL_INTERVAL", "soon")],
                "poll interval \"soon\"",
            ),
            (
                "[s3]\nbucket = \"b\"\n",
                vec![("DBR_MONITORED_ACCOUNTS", "000000000012,abc")],
                "\"abc\" is not an AWS account ID",
            ),
            (
                "[s3]\nbucket = \"b\"\n",
                vec![("DBR_S3_FORCE_PATH_STYLE", "maybe")],
                "DBR_S3_FORCE_PATH_STYLE",
            ),
            ("source = \"ftp:x\"\n", vec![], "neither"),
            (
                "source = \"dir:x\"\nconcurrency = 0\n",
                vec![],
                "concurrency 0 is outside 1 to 32",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_POLL_INTERVAL", "1ms")],
                "poll interval \"1ms\" is outside the allowed range, 10s to 7days",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_POLL_INTERVAL", "9s")],
                "10s to 7days",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_POLL_INTERVAL", "100years")],
                "10s to 7days",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_S3_READ_TIMEOUT", "0s")],
                "read timeout \"0s\" is outside the allowed range, 1s to 1h",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_SHUTDOWN_GRACE", "2h")],
                "shutdown grace \"2h\" is outside the allowed range, 1s to 10m",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_MEMORY_BUDGET", "64")],
                "memory budget \"64\" is outside the allowed range, 4MiB to 64GiB",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_MEMORY_BUDGET", "64MiB"), ("DBR_CONCURRENCY", "32")],
                "memory budget 64 MiB is too small for concurrency 32: each report being read needs at least 4 MiB, so at least 128 MiB",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_MONITORED_ACCOUNTS", "013328811177,13328811177")],
                "monitored accounts: \"13328811177\" is not an AWS account ID: those have 12 digits, it has 11",
            ),
            (
                "source = \"dir:x\"\n",
                vec![("DBR_STATUS_ADDR", "0.0.0.0:9187")],
                "the status page and the probes cannot share the address 0.0.0.0:9187",
            ),
            (
                "memory_budget = \"lots\"\n",
                vec![],
                "memory budget \"lots\" is not a size",
            ),
            ("bukket = \"b\"\n", vec![], "unknown field"),
        ];
        for (file, vars, expected) in cases {
            let error = load(file, &vars).unwrap_err();
            assert!(error.contains(expected), "{error} should say {expected}");
        }
    }

    /// Everything a `Settings` holds, the secret included, to compare two.
    fn everything(settings: &Settings) -> String {
        format!("{settings:?} {}", settings.database_url.expose_secret())
    }

    #[test]
    fn the_documented_defaults_are_the_built_in_ones() {
        let documented = Settings::load(
            Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE)),
            |_| None,
        )
        .unwrap();
        let built_in = Settings::from_layers(File::default(), |_| None).unwrap();
        assert_eq!(everything(&documented), everything(&built_in));
    }

    #[test]
    fn an_empty_variable_is_an_unset_one() {
        let file = "database_url = \"postgres://a@db/x\"\nsource = \"dir:x\"\nmonitored_accounts = \"000000000001\"\npoll_interval = \"1h\"\nconcurrency = 3\nmemory_budget = \"16MiB\"\ntemp_dir = \"/var/tmp\"\nshutdown_grace = \"5s\"\nhttp_addr = \"127.0.0.1:1\"\nstatus_addr = \"127.0.0.1:2\"\nlog_format = \"json\"\n[s3]\nbucket = \"b\"\nprefix = \"p/\"\nregion = \"r\"\nendpoint_url = \"http://e\"\nforce_path_style = true\nrole_arn = \"arn\"\nexternal_id = \"x\"\nrole_session_name = \"s\"\nread_timeout = \"2m\"\n";
        let unset = load(file, &[]).unwrap();
        for var in [
            "DATABASE_URL",
            "DBR_SOURCE",
            "DBR_MONITORED_ACCOUNTS",
            "DBR_POLL_INTERVAL",
            "DBR_CONCURRENCY",
            "DBR_SHUTDOWN_GRACE",
            "DBR_HTTP_ADDR",
            "DBR_STATUS_ADDR",
            "DBR_LOG_FORMAT",
            "DBR_BUCKET",
            "DBR_PREFIX",
            "DBR_S3_REGION",
            "DBR_S3_ENDPOINT_URL",
            "DBR_S3_FORCE_PATH_STYLE",
            "DBR_ROLE_ARN",
            "DBR_EXTERNAL_ID",
            "DBR_ROLE_SESSION_NAME",
            "DBR_S3_READ_TIMEOUT",
            "DBR_MEMORY_BUDGET",
            "DBR_TEMP_DIR",
        ] {
            for empty in ["", " "] {
                let settings =
                    load(file, &[(var, empty)]).unwrap_or_else(|e| panic!("{var}={empty:?}: {e}"));
                assert_eq!(everything(&settings), everything(&unset), "{var}={empty:?}");
            }
        }
    }

    #[test]
    fn memory_budgets_are_read_in_binary_units() {
        for (text, bytes) in [
            ("64MiB", 64 << 20),
            ("5120 KiB", 5120 << 10),
            ("1g", 1 << 30),
            ("30000000", 30_000_000),
        ] {
            assert_eq!(
                parse_memory_budget(Some(text.into())).unwrap(),
                bytes,
                "{text}"
            );
        }
        assert!(parse_memory_budget(Some("1TiB".into())).is_err());
        assert!(parse_memory_budget(Some("99999999999999999999MiB".into())).is_err());
    }

    #[test]
    fn a_syntax_error_does_not_echo_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "source = \"s3\"\ndatabase_url = \"postgres://u:hunter2@h/d\n",
        )
        .unwrap();
        let error = Settings::load(Some(&path), |_| None)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("config.toml line 2, column"), "{error}");
    }
}
