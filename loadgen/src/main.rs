//! llmrl-loadgen: drive llmrl gateways with many keys from many virtual clients, open or closed
//! loop, report throughput and honest latency, and audit that no limit was exceeded.

mod answer;
mod audit;
mod driver;
mod pacer;
mod report;

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Which API the requests speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Api {
    /// OpenAI's chat completions (`/v1/chat/completions`).
    Chat,
    /// OpenAI's Responses (`/v1/responses`).
    Responses,
    /// Anthropic's Messages (`/v1/messages`, key in `x-api-key`).
    Messages,
    /// OpenAI's embeddings (`/v1/embeddings`; input tokens only, never streamed).
    Embeddings,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
            Api::Embeddings => "/v1/embeddings",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Select {
    RoundRobin,
    Random,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "llmrl-loadgen",
    version,
    about = "Load generator and limit auditor for llmrl gateways"
)]
pub struct Cli {
    /// Gateway base URL (repeat for several nodes), e.g. http://127.0.0.1:8000
    #[arg(long = "node", required = true)]
    pub nodes: Vec<String>,
    /// API key to send (repeat for several keys).
    #[arg(long = "key", required = true)]
    pub keys: Vec<String>,
    /// How each request picks its node and key.
    #[arg(long, value_enum, default_value = "round-robin")]
    pub select: Select,
    /// The API the requests speak.
    #[arg(long, value_enum, default_value = "chat")]
    pub api: Api,
    #[arg(long, default_value = "gpt-4o-mini")]
    pub model: String,
    /// Prompt size in tokens: N, or MIN-MAX for a uniform range.
    #[arg(long, default_value = "32")]
    pub prompt_tokens: String,
    /// max_tokens of each request (omit to use the key's default reservation; Anthropic's
    /// Messages requires one: 16 then).
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Ask for streamed responses (with the usage chunk).
    #[arg(long)]
    pub stream: bool,
    /// Closed loop: this many virtual clients, each sending its next request when the last ends.
    /// Open loop: this many keep-alive connections working through the schedule (default 64).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Open loop: this many requests a second, latency measured from each intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many seconds (default 10 unless --requests is given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Worker threads; in open loop, each paces its own share of the schedule and connections.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// After a 429, a virtual client waits retry-after-ms before its next request.
    #[arg(long)]
    pub honor_retry_after: bool,
    /// Per-request timeout, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency distribution of 200s in HdrHistogram's percentile format.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Check that no scope (key, team, organisation, upstream pool; per minute, per day,
    /// in flight, spend) was admitted more than its limits allow.
    #[arg(long)]
    pub audit: bool,
    /// The gateway's keys file: every scope of every --key, with its limits, is audited.
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// Concurrency audit: each streamed answer's slot is taken as held from its response
    /// headers until this many ms before its last content chunk arrived (a gateway frees the
    /// slot once the upstream is done, which may be before that chunk reaches the client).
    #[arg(long, default_value_t = 10.0)]
    pub audit_slack_ms: f64,
    /// Limits for the audit when there is no keys file: RPM,ITPM,OTPM[,WINDOW_MS] (0 = unlimited).
    #[arg(long)]
    pub limits: Option<String>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl Cli {
    /// Virtual clients (closed loop) or connections (open loop); at least one.
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(64).max(1)
    }

    pub fn duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(secs), _) => Some(Duration::from_secs_f64(secs.max(0.0))),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    pub fn prompt_range(&self) -> Result<(u64, u64), String> {
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("bad --prompt-tokens {:?}", self.prompt_tokens))
        };
        match self.prompt_tokens.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    return Err("--prompt-tokens MIN-MAX needs MIN <= MAX".into());
                }
                Ok((a, b))
            }
            None => {
                let n = parse(&self.prompt_tokens)?;
                Ok((n, n))
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("llmrl-loadgen: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(message) => {
            eprintln!("llmrl-loadgen: {message}");
            ExitCode::from(2)
        }
    }
}

/// Run the load, print the report; the number of audit violations found.
async fn run(cli: Cli) -> Result<u64, String> {
    let plan = if cli.audit {
        Some(audit::plan_for(&cli)?)
    } else {
        None
    };
    let outcome = driver::drive(&cli).await?;
    let audits = plan.map(|plan| audit::audit(&outcome, &plan, cli.audit_slack_ms));
    let report = report::Report::build(&cli, &outcome, audits);
    print!("{}", report.text());
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.hgrm {
        std::fs::write(path, report::hgrm(&outcome.latency_ok))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report.violations())
}
