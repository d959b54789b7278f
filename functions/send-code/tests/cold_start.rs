//! The real binary, started the way Lambda starts it but without its configuration: the cold start must fail
//! at once with a message naming the missing variable (what an operator sees in CloudWatch), not later on a
//! request and not with a panic.

use std::process::Command;

#[test]
fn a_missing_variable_fails_the_cold_start_by_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_send-code"))
        .env_clear()
        .env("STAGE", "dev")
        .env("USERS_TABLE", "u")
        .env("CREDITS_TABLE", "c")
        .env("SESSIONS_TABLE", "s")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("environment variable CODES_TABLE is not set"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
