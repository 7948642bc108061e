//! Running the load generator to completion.

use crate::util::built;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The load generator binary: `LLMRL_LOADGEN`, or the release build in this workspace.
pub fn loadgen_path() -> PathBuf {
    built("LLMRL_LOADGEN", "llmrl-loadgen")
}

/// Run the load generator to completion: its exit code and stdout.
pub fn run_loadgen(args: &[&str]) -> (i32, String) {
    let output = Command::new(loadgen_path())
        .args(args)
        .arg("--quiet")
        .stdin(Stdio::null())
        .output()
        .expect("run llmrl-loadgen");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// Run the load generator with `--json json` added: its exit code, output and JSON report.
pub fn run_loadgen_report(args: &[&str], json: &Path) -> (i32, String, serde_json::Value) {
    let json_arg = json.display().to_string();
    let mut args = args.to_vec();
    args.extend(["--json", &json_arg]);
    let (code, output) = run_loadgen(&args);
    let report = std::fs::read_to_string(json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("no report ({code}): {output}"));
    (code, output, report)
}
