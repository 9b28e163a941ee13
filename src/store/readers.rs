//! Dashboards' roles: `SELECT` on the contract views and nothing else, for every integration
//! or for one. Run by the database's owner, like `migrate`, which grants them all again.

use sqlx::{AssertSqlSafe, PgConnection};

use super::{Store, StoreError};
use crate::domain::IntegrationName;

/// The views dashboards read (the README's SQL contract), with their columns in order; the
/// tables behind them may change. `src/store/views.sql` defines them.
pub const CONTRACT_VIEWS: [(&str, &[&str]); 8] = [
    (
        "account_monthly_costs",
        &[
            "payer_account_id",
            "linked_account_id",
            "billing_period",
            "unblended_cost",
            "blended_cost",
            "usage_quantity",
            "line_items",
            "invoice_status",
            "integration",
            "account_name",
            "usage_cost",
            "fee_cost",
            "tax_cost",
            "credit_cost",
            "refund_cost",
            "ri_fee_cost",
            "support_cost",
            "marketplace_cost",
            "amortized_cost",
        ],
    ),
    (
        "account_daily_costs",
        &[
            "payer_account_id",
            "linked_account_id",
            "billing_period",
            "usage_date",
            "product_name",
            "unblended_cost",
            "blended_cost",
            "usage_quantity",
            "integration",
            "amortized_cost",
        ],
    ),
    (
        "daily_costs_by_service",
        &[
            "payer_account_id",
            "linked_account_id",
            "billing_period",
            "usage_date",
            "product_name",
            "region",
            "charge_category",
            "purchase_option",
            "unblended_cost",
            "blended_cost",
            "usage_quantity",
            "line_items",
            "integration",
            "amortized_cost",
        ],
    ),
    (
        "cost_by_tag",
        &[
            "payer_account_id",
            "linked_account_id",
            "billing_period",
            "tag_key",
            "tag_value",
            "unblended_cost",
            "blended_cost",
            "line_items",
            "integration",
            "amortized_cost",
            "tag_values",
        ],
    ),
    (
        "top_resources",
        &[
            "payer_account_id",
            "linked_account_id",
            "billing_period",
            "resource_id",
            "product_name",
            "unblended_cost",
            "blended_cost",
            "usage_quantity",
            "line_items",
            "integration",
            "amortized_cost",
            "resources",
        ],
    ),
    (
        "focus_costs",
        &[
            "BilledCost",
            "EffectiveCost",
            "ListCost",
            "ListUnitPrice",
            "ContractedCost",
            "ContractedUnitPrice",
            "BillingAccountId",
            "BillingAccountName",
            "BillingAccountType",
            "BillingCurrency",
            "BillingPeriodStart",
            "BillingPeriodEnd",
            "CapacityReservationId",
            "CapacityReservationStatus",
            "ChargePeriodStart",
            "ChargePeriodEnd",
            "ChargeCategory",
            "ChargeClass",
            "ChargeDescription",
            "ChargeFrequency",
            "CommitmentDiscountId",
            "CommitmentDiscountName",
            "CommitmentDiscountCategory",
            "CommitmentDiscountType",
            "CommitmentDiscountStatus",
            "CommitmentDiscountQuantity",
            "CommitmentDiscountUnit",
            "SubAccountId",
            "SubAccountName",
            "SubAccountType",
            "ServiceName",
            "ServiceCategory",
            "ServiceSubcategory",
            "RegionId",
            "RegionName",
            "AvailabilityZone",
            "ResourceId",
            "ResourceName",
            "ResourceType",
            "Tags",
            "PricingQuantity",
            "PricingUnit",
            "PricingCategory",
            "PricingCurrency",
            "ConsumedQuantity",
            "ConsumedUnit",
            "InvoiceId",
            "InvoiceIssuerName",
            "ProviderName",
            "PublisherName",
            "SkuId",
            "SkuMeter",
            "SkuPriceId",
            "x_UsageType",
            "x_Operation",
            "x_ChargeCategory",
            "x_BlendedCost",
            "x_Integration",
            "x_LineItemType",
            "x_EffectiveCostOfPurchase",
        ],
    ),
    (
        "report_status",
        &[
            "bucket",
            "key",
            "etag",
            "payer_account_id",
            "billing_period",
            "status",
            "rows_read",
            "rows_kept",
            "rows_dropped",
            "error",
            "ingested_at",
            "location",
            "failure_kind",
            "rows_outside_period",
            "integration",
            "format",
        ],
    ),
    (
        "account_reconciliation",
        &[
            "payer_account_id",
            "linked_account_id",
            "billing_period",
            "entity",
            "unblended_cost",
            "account_total_unblended",
            "blended_cost",
            "account_total_blended",
            "reconciled",
            "integration",
        ],
    ),
];

/// The column naming a contract view's integration: `focus_costs` names its custom columns
/// as FOCUS asks (`x_…`).
pub fn integration_column(view: &str) -> &'static str {
    if view == "focus_costs" {
        "\"x_Integration\""
    } else {
        "integration"
    }
}

/// The names of the contract views.
pub fn contract_view_names() -> impl Iterator<Item = &'static str> {
    CONTRACT_VIEWS.iter().map(|(name, _)| *name)
}

/// PostgreSQL's longest identifier, in bytes: a longer one is silently cut.
const MAX_IDENTIFIER: usize = 63;

impl Store {
    /// Lets the existing `role` connect and read the contract views. With `integration`, it
    /// reads them through views of a schema of its own (`dbr_<name>`, made its search path)
    /// that show that integration's rows alone, and not the views of `public`. The grant is
    /// remembered: `migrate` makes it again. Returns the schema the role reads.
    ///
    /// Refused, before anything changes: a role that is a superuser, the one running this, or
    /// one that can write the service's tables (it would read every integration); an
    /// integration that does not exist; a schema name that another integration's schema has
    /// or that PostgreSQL would cut.
    pub async fn grant_reader(
        &self,
        role: &str,
        integration: Option<&IntegrationName>,
    ) -> Result<String, StoreError> {
        let valid = !role.is_empty()
            && role.len() <= MAX_IDENTIFIER
            && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(refused(format!(
                "{role:?} is not a role name this command takes (lower-case letters, digits and _)"
            )));
        }
        let mut tx = self.pool.begin().await?;
        // Grants of two processes at once would both take a schema name.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('dbr-ingest:readers', 0))")
            .execute(&mut *tx)
            .await?;
        check_reader_role(&mut tx, role).await?;
        let schema = match integration {
            None => None,
            Some(integration) => Some(schema_for(&mut tx, integration).await?),
        };
        let previous: Option<Option<String>> =
            sqlx::query_scalar("SELECT integration FROM reader_roles WHERE role_name = $1")
                .bind(role)
                .fetch_optional(&mut *tx)
                .await?;
        // A role moved to another integration (or to all) loses what it read before.
        if let Some(previous) = previous
            && previous.as_deref() != integration.map(IntegrationName::as_str)
        {
            revoke(&mut tx, role, previous.as_deref()).await?;
        }
        sqlx::query(
            "INSERT INTO reader_roles (role_name, integration) VALUES ($1, $2)
             ON CONFLICT (role_name) DO UPDATE SET integration = excluded.integration",
        )
        .bind(role)
        .bind(integration.map(IntegrationName::as_str))
        .execute(&mut *tx)
        .await?;
        if let (Some(schema), Some(integration)) = (&schema, integration) {
            create_schema_views(&mut tx, schema, integration.as_str()).await?;
        }
        grant(&mut tx, role, schema.as_deref()).await?;
        tx.commit().await?;
        Ok(schema.unwrap_or_else(|| "public".to_owned()))
    }
}

fn refused(message: String) -> StoreError {
    StoreError::Integration(message)
}

/// Refuses a role that does not exist, or that would read more than a dashboard should.
async fn check_reader_role(tx: &mut PgConnection, role: &str) -> Result<(), StoreError> {
    let found: Option<(bool, bool, bool)> = sqlx::query_as(
        "SELECT rolname IN (current_user, session_user),
                rolsuper,
                has_table_privilege(oid, 'public.reports', 'INSERT')
         FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut *tx)
    .await?;
    match found {
        None => Err(refused(format!(
            "there is no role {role}: create it first (CREATE ROLE {role} LOGIN PASSWORD '…')"
        ))),
        Some((true, _, _)) => Err(refused(format!(
            "{role} is the role running this command (the service's own): give the dashboard a role of its own"
        ))),
        Some((_, true, _)) => Err(refused(format!(
            "{role} is a superuser: it reads everything whatever is granted; give the dashboard a role of its own"
        ))),
        Some((_, _, true)) => Err(refused(format!(
            "{role} can write the service's tables (the service's role?): give the dashboard a role of its own"
        ))),
        Some(_) => Ok(()),
    }
}

/// The schema of `integration`'s reader views: the one it was given before, or `dbr_<name>`
/// (`-` written `_`) when no other integration has that name and PostgreSQL would not cut it.
async fn schema_for(
    tx: &mut PgConnection,
    integration: &IntegrationName,
) -> Result<String, StoreError> {
    if !integration.is_default() {
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM integrations WHERE name = $1")
            .bind(integration.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(refused(format!(
                "there is no integration {integration} (`dbr-ingest integrations list` shows them)"
            )));
        }
    }
    let given: Option<String> =
        sqlx::query_scalar("SELECT schema_name FROM reader_schemas WHERE integration = $1")
            .bind(integration.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(schema) = given {
        return Ok(schema);
    }
    let schema = format!("dbr_{}", integration.as_str().replace('-', "_"));
    if schema.len() > MAX_IDENTIFIER {
        return Err(refused(format!(
            "integration {integration}'s reader schema would be {schema}, {} bytes: PostgreSQL cuts names at {MAX_IDENTIFIER}, \
             so it could become another integration's; give the integration a name of at most {} characters",
            schema.len(),
            MAX_IDENTIFIER - "dbr_".len()
        )));
    }
    let taken: Option<String> =
        sqlx::query_scalar("SELECT integration FROM reader_schemas WHERE schema_name = $1")
            .bind(&schema)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(other) = taken {
        return Err(refused(format!(
            "schema {schema} already shows integration {other}'s rows, and {integration}'s would have the same name: \
             readers of {integration} need an integration of another name"
        )));
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&schema)
            .fetch_one(&mut *tx)
            .await?;
    if exists {
        return Err(refused(format!(
            "schema {schema} exists and is not a reader schema of dbr-ingest: rename or drop it first"
        )));
    }
    sqlx::query("INSERT INTO reader_schemas (schema_name, integration) VALUES ($1, $2)")
        .bind(&schema)
        .bind(integration.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(schema)
}

/// (Re)creates the views of an integration's reader schema over the contract views.
async fn create_schema_views(
    tx: &mut PgConnection,
    schema: &str,
    integration: &str,
) -> Result<(), StoreError> {
    // Schema and integration names are letters, digits, - and _: safe as written here.
    let mut statements = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
        format!("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"),
    ];
    for view in contract_view_names() {
        let column = integration_column(view);
        statements.push(format!(
            "CREATE OR REPLACE VIEW {schema}.{view} AS
             SELECT * FROM public.{view} WHERE {column} = '{integration}'"
        ));
    }
    execute(tx, statements).await
}

/// Grants `role` the contract views: of `schema` (made its search path), or of `public`.
async fn grant(tx: &mut PgConnection, role: &str, schema: Option<&str>) -> Result<(), StoreError> {
    let database = current_database(tx).await?;
    let mut statements = vec![format!("GRANT CONNECT ON DATABASE {database} TO {role}")];
    let schema_name = schema.unwrap_or("public");
    statements.push(format!("GRANT USAGE ON SCHEMA {schema_name} TO {role}"));
    for view in contract_view_names() {
        statements.push(format!("GRANT SELECT ON {schema_name}.{view} TO {role}"));
    }
    if let Some(schema) = schema {
        statements.push(format!(
            "ALTER ROLE {role} IN DATABASE {database} SET search_path = {schema}"
        ));
    }
    execute(tx, statements).await
}

/// Takes back what `role` read: one integration's schema, or (`None`) public's views.
async fn revoke(
    tx: &mut PgConnection,
    role: &str,
    integration: Option<&str>,
) -> Result<(), StoreError> {
    let schema: Option<String> = match integration {
        None => None,
        Some(integration) => {
            sqlx::query_scalar("SELECT schema_name FROM reader_schemas WHERE integration = $1")
                .bind(integration)
                .fetch_optional(&mut *tx)
                .await?
        }
    };
    let database = current_database(tx).await?;
    let statements = match schema {
        Some(schema) => vec![
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}"),
            format!("REVOKE USAGE ON SCHEMA {schema} FROM {role}"),
            format!("ALTER ROLE {role} IN DATABASE {database} RESET search_path"),
        ],
        None => contract_view_names()
            .map(|view| format!("REVOKE SELECT ON public.{view} FROM {role}"))
            .collect(),
    };
    execute(tx, statements).await
}

/// Grants every remembered reader again, after `migrate` changed the views: each reader
/// schema's views are made anew, and each role that still exists gets its views.
pub(super) async fn grant_again(tx: &mut PgConnection) -> Result<(), StoreError> {
    let schemas: Vec<(String, String)> =
        sqlx::query_as("SELECT schema_name, integration FROM reader_schemas")
            .fetch_all(&mut *tx)
            .await?;
    for (schema, integration) in schemas {
        create_schema_views(tx, &schema, &integration).await?;
    }
    let roles: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT r.role_name, s.schema_name FROM reader_roles r
         LEFT JOIN reader_schemas s USING (integration)
         WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.role_name)
           AND (r.integration IS NULL OR s.schema_name IS NOT NULL)",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (role, schema) in roles {
        grant(tx, &role, schema.as_deref()).await?;
    }
    Ok(())
}

/// The database's name, quoted as an identifier.
async fn current_database(tx: &mut PgConnection) -> Result<String, StoreError> {
    Ok(sqlx::query_scalar("SELECT quote_ident(current_database())")
        .fetch_one(&mut *tx)
        .await?)
}

async fn execute(tx: &mut PgConnection, statements: Vec<String>) -> Result<(), StoreError> {
    for statement in statements {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
