//! Prepares one run of a deployed function on loopback stand-ins, for `infra/scripts/invoke.sh`
//! ([`bench::invoke`]): ensures the stage (the template's tables in DynamoDB Local, the buckets and secrets the
//! function's environment names in moto), signs a number in through the local API with `--as`, and writes
//!
//! - `OUT/env`: the function's whole environment, one `NAME=VALUE` a line (template.yaml's variables with
//!   local names, then what Lambda sets), `--env` overrides last;
//! - `OUT/event.json`: the fixture, with the access token in its `authorization` header under `--as`;
//! - `OUT/timeout`: the function's `Timeout` in template.yaml, in seconds.
//!
//! ```text
//! local-stage templates --event events/list-templates.json --out /tmp/x \
//!   --dynamodb-endpoint http://127.0.0.1:8000 --s3-endpoint http://127.0.0.1:5000 [--as +14155550123]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use bench::invoke::{event_with_token, LocalStage, Plan};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Prepares one run of a deployed function on loopback stand-ins (infra/scripts/invoke.sh)")]
struct Args {
    /// The function: its binary, the directory name under functions/.
    function: String,
    /// The event fixture.
    #[arg(long)]
    event: PathBuf,
    /// Where env, event.json and timeout are written.
    #[arg(long)]
    out: PathBuf,
    /// Sign this number in through the local API and put its access token in the event.
    #[arg(long = "as", value_name = "PHONE")]
    as_phone: Option<String>,
    /// NAME=VALUE over the template's variables (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    overrides: Vec<String>,
    /// DynamoDB Local.
    #[arg(long, env = "FACEMAKE_TEST_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: String,
    /// moto (S3 and Secrets Manager).
    #[arg(long, env = "FACEMAKE_TEST_S3_ENDPOINT")]
    s3_endpoint: String,
    /// What the stage's tables, buckets and secrets are named with: lower-case letters, digits and hyphens.
    #[arg(long, env = "FACEMAKE_INVOKE_PREFIX", default_value = "invoke-")]
    prefix: String,
}

async fn run(args: Args) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if args.prefix.is_empty() || !args.prefix.chars().all(valid) {
        return Err(format!("the prefix {:?} is not lower-case letters, digits and hyphens", args.prefix));
    }
    let plan = Plan::read(&testkit::schema::template()?, &args.function)?;
    let stage = LocalStage::ensure(&plan, &args.dynamodb_endpoint, &args.s3_endpoint, &args.prefix).await?;
    let mut env = plan.environment(&stage)?;
    for pair in &args.overrides {
        let (name, value) = pair.split_once('=').ok_or_else(|| format!("--env {pair}: not NAME=VALUE"))?;
        env.insert(name.to_owned(), value.to_owned());
    }
    let fixture = std::fs::read_to_string(&args.event).map_err(|e| format!("{}: {e}", args.event.display()))?;
    let token = match &args.as_phone {
        Some(phone) => Some(stage.sign_in(&env, phone).await?),
        None => None,
    };
    let event = event_with_token(&fixture, token.as_deref())?;

    let mut lines = String::new();
    for (name, value) in &env {
        if value.contains('\n') {
            return Err(format!("{name}: a value with a line break cannot be passed on"));
        }
        lines.push_str(&format!("{name}={value}\n"));
    }
    let write = |file: &str, text: &str| {
        let path = args.out.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    write("env", &lines)?;
    write("event.json", &event)?;
    write("timeout", &plan.timeout_secs.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-stage: {e}");
            ExitCode::FAILURE
        }
    }
}
