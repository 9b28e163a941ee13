//! `dbr-ingest integrations …`: the integrations table from the command line. Each command
//! says what it did; `list --json` is for scripts.

use clap::{Args, Subcommand};
use dbr_ingest::config::{AssumeRole, S3Settings, Settings, SourceSetting};
use dbr_ingest::domain::{IntegrationName, Monitored};
use dbr_ingest::integration::{Integration, IntegrationSource};
use dbr_ingest::store::Store;
use serde_json::json;

type Failure = Box<dyn std::error::Error>;

#[derive(Subcommand)]
pub enum Action {
    /// Add an integration: a source (--bucket, or --source dir:PATH), credentials (the default
    /// chain, or --role-arn with --external-id) and the linked accounts to keep.
    Add {
        name: IntegrationName,
        #[command(flatten)]
        definition: Definition,
        /// Linked accounts to keep: account IDs separated by commas, or * for every account.
        #[arg(long, value_parser = Monitored::parse)]
        monitored: Monitored,
    },
    /// List the integrations: name, state, source, monitored accounts.
    List {
        /// One JSON array, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show one integration, with its monitored accounts and what it has stored.
    Show { name: IntegrationName },
    /// Change an integration: only the flags given change.
    Update {
        name: IntegrationName,
        #[command(flatten)]
        definition: Definition,
        /// Stop assuming a role: read with the default credentials.
        #[arg(long, conflicts_with_all = ["role_arn", "external_id", "role_session_name"])]
        no_role: bool,
        /// Replace the monitored accounts: IDs separated by commas, or *.
        #[arg(long, value_parser = Monitored::parse)]
        monitored: Option<Monitored>,
    },
    /// Remove an integration: its costs leave the views, its ledger goes.
    Remove { name: IntegrationName },
    /// Stop polling an integration; its data stays in the views.
    Disable { name: IntegrationName },
    /// Poll an integration again.
    Enable { name: IntegrationName },
}

/// Where an integration's reports are and how they are read.
#[derive(Args)]
pub struct Definition {
    /// The customer's billing bucket.
    #[arg(long, conflicts_with = "source")]
    bucket: Option<String>,
    /// A local directory laid out like a bucket: dir:PATH.
    #[arg(long, value_parser = SourceSetting::parse)]
    source: Option<SourceSetting>,
    /// Only keys under this prefix are read.
    #[arg(long)]
    prefix: Option<String>,
    /// The bucket's region.
    #[arg(long)]
    region: Option<String>,
    /// An S3-compatible endpoint instead of AWS's.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Path-style URLs (http://host/bucket/key).
    #[arg(long)]
    force_path_style: Option<Option<bool>>,
    /// A role in the customer's account to assume through STS.
    #[arg(long)]
    role_arn: Option<String>,
    /// The external ID the role's trust policy requires.
    #[arg(long, requires = "role_arn")]
    external_id: Option<String>,
    /// The role session's name, shown in the customer's CloudTrail (default dbr-ingest).
    #[arg(long, requires = "role_arn")]
    role_session_name: Option<String>,
    /// Read only the Cost and Usage Report of this name (when a payer has several); '' for
    /// every one.
    #[arg(long)]
    report_name: Option<String>,
}

impl Definition {
    /// The report name after the flag given: `before` without one, none for ''.
    fn report_name(&self, before: Option<String>) -> Result<Option<String>, Failure> {
        match self.report_name.as_deref() {
            None => Ok(before),
            Some("") => Ok(None),
            Some(name) => Ok(Some(dbr_ingest::domain::report_name(name)?)),
        }
    }

    /// Applies the flags given to `source` (the stored one, or none for a new integration).
    fn apply(
        self,
        source: Option<IntegrationSource>,
        no_role: bool,
        settings: &Settings,
    ) -> Result<IntegrationSource, Failure> {
        let s3_only = self.prefix.is_some()
            || self.region.is_some()
            || self.endpoint_url.is_some()
            || self.force_path_style.is_some()
            || self.role_arn.is_some();
        let mut source = match (self.bucket, self.source, source) {
            (Some(bucket), _, Some(IntegrationSource::S3(mut s3))) => {
                s3.bucket = bucket;
                IntegrationSource::S3(s3)
            }
            (Some(bucket), _, _) => IntegrationSource::S3(S3Settings {
                bucket,
                prefix: String::new(),
                region: None,
                endpoint_url: None,
                force_path_style: false,
                assume_role: None,
                read_timeout: settings.s3.read_timeout,
            }),
            // Stored absolute: a later `once` may run in another directory.
            (None, Some(SourceSetting::Dir(path)), _) => IntegrationSource::Dir(
                std::path::absolute(&path)
                    .map_err(|e| format!("directory {}: {e}", path.display()))?,
            ),
            (None, Some(SourceSetting::S3), _) => {
                return Err("give the bucket with --bucket NAME".into());
            }
            (None, None, Some(source)) => source,
            (None, None, None) => {
                return Err("an integration needs --bucket NAME or --source dir:PATH".into());
            }
        };
        match &mut source {
            IntegrationSource::S3(s3) => {
                if let Some(prefix) = self.prefix {
                    s3.prefix = prefix;
                }
                if let Some(region) = self.region {
                    s3.region = Some(region).filter(|r| !r.is_empty());
                }
                if let Some(endpoint) = self.endpoint_url {
                    s3.endpoint_url = Some(endpoint).filter(|e| !e.is_empty());
                }
                if let Some(path_style) = self.force_path_style {
                    s3.force_path_style = path_style.unwrap_or(true);
                }
                if no_role {
                    s3.assume_role = None;
                }
                if let Some(role_arn) = self.role_arn {
                    if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                        return Err(format!(
                            "{role_arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
                        )
                        .into());
                    }
                    let keep = s3.assume_role.take();
                    s3.assume_role = Some(AssumeRole {
                        role_arn,
                        external_id: self
                            .external_id
                            .or_else(|| keep.as_ref().and_then(|k| k.external_id.clone())),
                        session_name: self
                            .role_session_name
                            .or_else(|| keep.map(|k| k.session_name))
                            .unwrap_or_else(|| "dbr-ingest".into()),
                    });
                } else if let Some(role) = &mut s3.assume_role {
                    if let Some(id) = self.external_id {
                        role.external_id = Some(id);
                    }
                    if let Some(name) = self.role_session_name {
                        role.session_name = name;
                    }
                }
            }
            IntegrationSource::Dir(_) if s3_only => {
                return Err("--prefix, --region, --endpoint-url, --force-path-style and --role-arn are for an S3 bucket, not a directory".into());
            }
            IntegrationSource::Dir(_) => {}
        }
        Ok(source)
    }
}

pub async fn run(store: &Store, settings: &Settings, action: Action) -> Result<bool, Failure> {
    match action {
        Action::Add {
            name,
            definition,
            monitored,
        } => {
            refuse_default(&name)?;
            let integration = Integration {
                report_name: definition.report_name(None)?,
                source: definition.apply(None, false, settings)?,
                name,
                monitored: None,
                enabled: true,
            };
            store.add_integration(&integration, &monitored).await?;
            println!(
                "{} added: {}, {}",
                integration.name,
                integration.source,
                describe(&monitored)
            );
        }
        Action::List { json } => {
            let all = all_integrations(store, settings).await?;
            if json {
                let mut list = Vec::new();
                for (integration, origin) in &all {
                    let monitored = monitored_of(store, integration).await?;
                    list.push(to_json(integration, origin, &monitored));
                }
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for (integration, origin) in &all {
                    let monitored = monitored_of(store, integration).await?;
                    println!(
                        "{}\t{}\t{}\t{}\t{origin}",
                        integration.name,
                        if integration.enabled {
                            "enabled"
                        } else {
                            "disabled"
                        },
                        integration.source,
                        describe(&monitored)
                    );
                }
            }
        }
        Action::Show { name } => {
            let all = all_integrations(store, settings).await?;
            let Some((integration, origin)) = all.iter().find(|(i, _)| i.name == name) else {
                return Err(no_such(&name));
            };
            let monitored = monitored_of(store, integration).await?;
            println!("name        {}", integration.name);
            println!("defined by  {origin}");
            println!(
                "state       {}",
                if integration.enabled {
                    "enabled"
                } else {
                    "disabled"
                }
            );
            println!("source      {}", integration.source.location());
            if let IntegrationSource::S3(s3) = &integration.source {
                if let Some(region) = &s3.region {
                    println!("region      {region}");
                }
                if let Some(endpoint) = &s3.endpoint_url {
                    println!(
                        "endpoint    {}",
                        dbr_ingest::secrets::display_endpoint(endpoint)
                    );
                }
                if s3.force_path_style {
                    println!("path style  yes");
                }
                match &s3.assume_role {
                    Some(role) => {
                        println!("role        {}", role.role_arn);
                        if let Some(id) = &role.external_id {
                            println!("external id {id}");
                        }
                        println!("session     {}", role.session_name);
                    }
                    None => println!("credentials the default chain"),
                }
            }
            if let Some(report) = &integration.report_name {
                println!("reads CUR   {report} only");
            }
            println!("monitored   {}", describe(&monitored));
            if let Monitored::Only(ids) = &monitored {
                for id in ids {
                    println!("            {id}");
                }
            }
            let stored = store.integration_contents(&name).await?;
            println!(
                "stored      {} statements; reports: {} ingested, {} failed, {} superseded",
                stored.statements, stored.ingested, stored.failed, stored.superseded
            );
        }
        Action::Update {
            name,
            definition,
            no_role,
            monitored,
        } => {
            refuse_default(&name)?;
            let stored = store.integrations(settings.s3.read_timeout).await?;
            let Some(mut integration) = stored.into_iter().find(|i| i.name == name) else {
                return Err(no_such(&name));
            };
            let (source_before, monitored_before, report_before) = (
                integration.source.clone(),
                monitored_of(store, &integration).await?,
                integration.report_name.clone(),
            );
            integration.report_name = definition.report_name(integration.report_name)?;
            integration.source = definition.apply(Some(integration.source), no_role, settings)?;
            store
                .update_integration(&integration, monitored.as_ref())
                .await?;
            let monitored_after = monitored_of(store, &integration).await?;
            let mut changes = Vec::new();
            if integration.source != source_before {
                changes.push(format!("source {source_before} -> {}", integration.source));
            }
            if integration.report_name != report_before {
                let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "every one".into());
                changes.push(format!(
                    "Cost and Usage Report {} -> {}",
                    name(&report_before),
                    name(&integration.report_name)
                ));
            }
            if monitored_after != monitored_before {
                changes.push(format!(
                    "monitored {} -> {}",
                    list_monitored(&monitored_before),
                    list_monitored(&monitored_after)
                ));
            }
            if changes.is_empty() {
                println!("{name}: nothing changed");
            } else {
                println!("{name} updated: {}", changes.join("; "));
            }
        }
        Action::Remove { name } => {
            let removed = store.remove_integration(&name).await?;
            println!(
                "{name} removed: {} statements left the views, {} ledger rows deleted",
                removed.statements, removed.reports
            );
            if name.is_default() {
                println!(
                    "default is the configuration's: it is polled again while the configuration names a bucket"
                );
            }
        }
        Action::Disable { name } | Action::Enable { name } if name.is_default() => {
            return Err(
                "default is the configuration's integration: unset DBR_BUCKET to stop it".into(),
            );
        }
        Action::Disable { name } => {
            store.set_integration_enabled(&name, false).await?;
            println!("{name} disabled: not polled; its data stays in the views");
        }
        Action::Enable { name } => {
            store.set_integration_enabled(&name, true).await?;
            println!("{name} enabled");
        }
    }
    Ok(true)
}

fn refuse_default(name: &IntegrationName) -> Result<(), Failure> {
    if name.is_default() {
        return Err("default is the configuration's integration (DBR_BUCKET, DBR_MONITORED_ACCOUNTS, …): change it there, or give this one another name".into());
    }
    Ok(())
}

fn no_such(name: &IntegrationName) -> Failure {
    format!("there is no integration named {name}: `dbr-ingest integrations list` shows them")
        .into()
}

/// The configuration's integration (when it names a source) and the table's.
async fn all_integrations(
    store: &Store,
    settings: &Settings,
) -> Result<Vec<(Integration, &'static str)>, Failure> {
    let mut all: Vec<(Integration, &'static str)> = Integration::from_settings(settings)
        .map(|i| (i, "configuration"))
        .into_iter()
        .collect();
    for integration in store.integrations(settings.s3.read_timeout).await? {
        all.push((integration, "table"));
    }
    Ok(all)
}

/// The monitored set as stored (for `default`, the table's and the configuration's).
async fn monitored_of(store: &Store, integration: &Integration) -> Result<Monitored, Failure> {
    if integration.monitored == Some(Monitored::All) {
        return Ok(Monitored::All);
    }
    let mut ids: std::collections::BTreeSet<_> = store
        .monitored_accounts(&integration.name)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    if let Some(Monitored::Only(configured)) = &integration.monitored {
        ids.extend(configured.iter().cloned());
    }
    Ok(Monitored::Only(ids))
}

/// Every monitored ID, for a change.
fn list_monitored(monitored: &Monitored) -> String {
    match monitored {
        Monitored::All => "*".into(),
        Monitored::Only(ids) if ids.is_empty() => "none".into(),
        Monitored::Only(ids) => ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn describe(monitored: &Monitored) -> String {
    match monitored {
        Monitored::All => "every account (*)".into(),
        Monitored::Only(ids) if ids.len() == 1 => "1 monitored account".into(),
        Monitored::Only(ids) => format!("{} monitored accounts", ids.len()),
    }
}

fn to_json(integration: &Integration, origin: &str, monitored: &Monitored) -> serde_json::Value {
    let source = match &integration.source {
        IntegrationSource::S3(s3) => json!({
            "kind": "s3",
            "bucket": s3.bucket,
            "prefix": s3.prefix,
            "region": s3.region,
            "endpoint_url": s3.endpoint_url.as_deref().map(dbr_ingest::secrets::display_endpoint),
            "force_path_style": s3.force_path_style,
        }),
        IntegrationSource::Dir(path) => json!({"kind": "dir", "path": path.display().to_string()}),
    };
    let role = match &integration.source {
        IntegrationSource::S3(S3Settings {
            assume_role: Some(role),
            ..
        }) => json!({
            "role_arn": role.role_arn,
            "external_id": role.external_id,
            "session_name": role.session_name,
        }),
        _ => serde_json::Value::Null,
    };
    let monitored = match monitored {
        Monitored::All => json!("*"),
        Monitored::Only(ids) => json!(ids.iter().map(|id| id.as_str()).collect::<Vec<_>>()),
    };
    json!({
        "name": integration.name.as_str(),
        "origin": origin,
        "enabled": integration.enabled,
        "location": integration.source.location(),
        "source": source,
        "role": role,
        "monitored": monitored,
        "report_name": integration.report_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(args: &[&str]) -> Definition {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            definition: Definition,
        }
        let mut all = vec!["flags"];
        all.extend_from_slice(args);
        <Flags as clap::Parser>::try_parse_from(all)
            .unwrap()
            .definition
    }

    fn settings() -> Settings {
        Settings::load(Some(std::path::Path::new("/dev/null")), |_| None).unwrap()
    }

    fn s3(source: &IntegrationSource) -> &S3Settings {
        match source {
            IntegrationSource::S3(s3) => s3,
            IntegrationSource::Dir(_) => panic!("not S3"),
        }
    }

    #[test]
    fn a_report_name_is_kept_changed_or_cleared() {
        let before = Some("hourly".to_owned());
        assert_eq!(definition(&[]).report_name(before.clone()).unwrap(), before);
        let daily = definition(&["--report-name", "daily"]);
        assert_eq!(
            daily.report_name(before.clone()).unwrap().as_deref(),
            Some("daily")
        );
        assert_eq!(
            definition(&["--report-name", ""])
                .report_name(before.clone())
                .unwrap(),
            None
        );
        let refused = definition(&["--report-name", "a/b"]).report_name(None);
        assert!(refused.is_err());
    }

    #[test]
    fn flags_make_a_source_and_change_only_what_they_name() {
        let settings = settings();
        let added = definition(&[
            "--bucket",
            "acme-billing",
            "--prefix",
            "dbr/",
            "--role-arn",
            "arn:aws:iam::210987654321:role/billing-reader",
            "--external-id",
            "x-42",
        ])
        .apply(None, false, &settings)
        .unwrap();
        assert_eq!(added.location(), "s3://acme-billing/dbr/");
        let role = s3(&added).assume_role.clone().unwrap();
        assert_eq!(
            (role.external_id.as_deref(), role.session_name.as_str()),
            (Some("x-42"), "dbr-ingest")
        );

        let moved = definition(&["--region", "eu-west-1", "--force-path-style"])
            .apply(Some(added.clone()), false, &settings)
            .unwrap();
        let moved_s3 = s3(&moved);
        assert_eq!(moved_s3.region.as_deref(), Some("eu-west-1"));
        assert!(moved_s3.force_path_style);
        assert_eq!(moved_s3.prefix, "dbr/", "unchanged");
        assert_eq!(moved_s3.assume_role, Some(role), "unchanged");

        let without_role = definition(&[]).apply(Some(moved), true, &settings).unwrap();
        assert_eq!(s3(&without_role).assume_role, None);

        let dir = definition(&["--source", "dir:/srv/extracts"])
            .apply(Some(without_role), false, &settings)
            .unwrap();
        assert_eq!(dir.location(), "dir:/srv/extracts");
    }

    #[test]
    fn flags_that_do_not_fit_are_refused() {
        let settings = settings();
        for (args, expected) in [
            (&[][..], "needs --bucket NAME or --source dir:PATH"),
            (&["--source", "s3"][..], "give the bucket"),
            (
                &["--source", "dir:/x", "--prefix", "p/"][..],
                "not a directory",
            ),
            (
                &["--bucket", "b", "--role-arn", "billing"][..],
                "is not a role ARN",
            ),
        ] {
            let error = definition(args)
                .apply(None, false, &settings)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
