//! `cargo run -p observability`: rewrites template.yaml's generated region (alarms and dashboard) from
//! infra/observability/metrics.yaml. With `--check`, only says whether it is current (exit 1 if not).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("observability: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (source_path, template_path) = (crate_dir.join("metrics.yaml"), crate_dir.join("../../template.yaml"));
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let (source, template) = (read(&source_path)?, read(&template_path)?);
    let regenerated = observability::regenerate(&source, &template)?;
    if regenerated == template {
        println!("template.yaml's alarms and dashboard are current");
        return Ok(ExitCode::SUCCESS);
    }
    if std::env::args().skip(1).any(|a| a == "--check") {
        eprintln!(
            "template.yaml's alarms and dashboard are not what metrics.yaml makes: run `cargo run -p observability`"
        );
        return Ok(ExitCode::FAILURE);
    }
    std::fs::write(&template_path, &regenerated).map_err(|e| format!("{}: {e}", template_path.display()))?;
    let (_, region, _) = observability::split(&regenerated)?;
    println!("wrote template.yaml's alarms and dashboard ({} lines)", region.lines().count());
    Ok(ExitCode::SUCCESS)
}
