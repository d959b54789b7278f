//! `facemake-admin`: operator commands for a stage (or the local API's DynamoDB tables). See
//! docs/operations.md, "Operating a stage".

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use facemake::config::Tables;
use facemake::ports::SystemClock;
use facemake_admin::{adjust, describe_user, recount, recount_all, resolve_user, seed, set_active, Assets};

#[derive(Parser)]
#[command(name = "facemake-admin", about = "Operator commands for a Facemake stage", version)]
struct Cli {
    #[command(flatten)]
    tables: TableArgs,
    #[command(subcommand)]
    command: Command,
}

/// The stage's tables: the stack outputs (docs/operations.md shows how to export them), or a local prefix.
#[derive(Args)]
struct TableArgs {
    /// Tables named `<prefix><LogicalId>`, as the local API creates them in DynamoDB Local (takes precedence
    /// over the table flags and variables).
    #[arg(long, global = true)]
    local_prefix: Option<String>,
    #[arg(long, global = true, env = "USERS_TABLE")]
    users_table: Option<String>,
    #[arg(long, global = true, env = "CREDITS_TABLE")]
    credits_table: Option<String>,
    #[arg(long, global = true, env = "CATALOGUE_TABLE")]
    catalogue_table: Option<String>,
    /// `recount` only.
    #[arg(long, global = true, env = "GENERATIONS_TABLE")]
    generations_table: Option<String>,
    /// `recount` only.
    #[arg(long, global = true, env = "CHARACTERS_TABLE")]
    characters_table: Option<String>,
}

#[derive(Args)]
struct Who {
    /// The user's id.
    #[arg(long)]
    user: Option<String>,
    /// The user's phone number (E.164).
    #[arg(long)]
    phone: Option<String>,
}

#[derive(Args)]
struct Adjustment {
    #[command(flatten)]
    who: Who,
    #[arg(long)]
    amount: u32,
    #[arg(long)]
    reason: String,
}

#[derive(Subcommand)]
enum Command {
    /// Upsert the categories and templates of a seed file, uploading previews to the assets bucket.
    Seed {
        #[arg(long, default_value = "infra/catalogue/catalogue.yaml")]
        file: PathBuf,
        /// The stack's AssetsBucketName output; without it previews are not uploaded.
        #[arg(long, env = "ASSETS_BUCKET")]
        assets_bucket: Option<String>,
    },
    /// Hide a template from the catalogue (existing generations keep working).
    Deactivate { template: String },
    /// Show a hidden template again.
    Activate { template: String },
    /// Give credits, with a reason kept in the user's ledger.
    Grant(Adjustment),
    /// Take credits (never below zero), with a reason kept in the user's ledger.
    Take(Adjustment),
    /// Show a user's account and latest ledger entries.
    User {
        #[command(flatten)]
        who: Who,
    },
    /// Set the profile stats counters (generations, succeeded, favourites, characters) from the records: for
    /// data written before the counters existed. One user, or with --all every user. Safe beside live traffic:
    /// a counter that changes during its recount is recounted.
    Recount {
        #[command(flatten)]
        who: Who,
        #[arg(long, conflicts_with_all = ["user", "phone"])]
        all: bool,
    },
}

impl TableArgs {
    fn tables(&self) -> Result<Tables, String> {
        if let Some(prefix) = &self.local_prefix {
            return Ok(Tables::prefixed(prefix));
        }
        let need = |v: &Option<String>, flag: &str| v.clone().ok_or(format!("{flag} (or its variable) is required"));
        Ok(Tables {
            users: need(&self.users_table, "--users-table")?,
            credits: need(&self.credits_table, "--credits-table")?,
            // Not used by any admin command.
            codes: String::new(),
            sessions: String::new(),
            devices: String::new(),
            catalogue: need(&self.catalogue_table, "--catalogue-table")?,
            generations: self.generations_table.clone().unwrap_or_default(),
            characters: self.characters_table.clone().unwrap_or_default(),
        })
    }
}

struct Bucket {
    client: aws_sdk_s3::Client,
    bucket: String,
}

#[async_trait::async_trait]
impl Assets for Bucket {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .cache_control("public, max-age=86400")
            .body(bytes.into())
            .send()
            .await
            .map_err(|e| format!("uploading {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}

async fn run(cli: Cli) -> Result<String, String> {
    let sdk = facemake::wiring::aws_config().await?;
    let store = facemake::wiring::Deps::dynamo(&sdk, cli.tables.tables()?);
    let clock = SystemClock;
    match cli.command {
        Command::Seed { file, assets_bucket } => {
            let bucket = assets_bucket.map(|bucket| Bucket { client: aws_sdk_s3::Client::new(&sdk), bucket });
            seed(&store, &file, bucket.as_ref().map(|b| b as &dyn Assets)).await
        }
        Command::Deactivate { template } => set_active(&store, &template, false).await,
        Command::Activate { template } => set_active(&store, &template, true).await,
        Command::Grant(a) => adjust_user(&store, a, 1, &clock).await,
        Command::Take(a) => adjust_user(&store, a, -1, &clock).await,
        Command::User { who } => {
            let user = resolve_user(&store, who.user.as_deref(), who.phone.as_deref()).await?;
            describe_user(&store, &user).await
        }
        Command::Recount { who, all } => {
            let t = store.tables();
            if t.generations.is_empty() || t.characters.is_empty() {
                return Err("recount needs --generations-table and --characters-table (or their variables)".into());
            }
            if all {
                recount_all(&store).await
            } else {
                let user = resolve_user(&store, who.user.as_deref(), who.phone.as_deref()).await?;
                recount(&store, &user).await
            }
        }
    }
}

/// `grant` (`sign` 1) or `take` (`sign` -1).
async fn adjust_user(
    store: &facemake::adapters::dynamodb::DynamoStore,
    a: Adjustment,
    sign: i64,
    clock: &SystemClock,
) -> Result<String, String> {
    let user = resolve_user(store, a.who.user.as_deref(), a.who.phone.as_deref()).await?;
    adjust(store, &user, sign * i64::from(a.amount), &a.reason, clock).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(out) => {
            println!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("facemake-admin: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
