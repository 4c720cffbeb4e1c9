//! The `nimbus` binary: `nimbus up` assembles the server from the role crates; every
//! other subcommand is a client of a running server's API. One file per subcommand
//! under `commands/`.

mod client;
mod commands;
mod iam;
mod package;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Run Lambda-style serverless apps on one machine."
)]
struct Cli {
    /// API endpoint of the running server (client subcommands).
    #[arg(
        long,
        global = true,
        env = "NIMBUS_ENDPOINT",
        default_value = "http://127.0.0.1:4566"
    )]
    endpoint: String,
    /// Access key to sign requests with (client subcommands), for a server
    /// started with --credentials. Falls back to AWS_ACCESS_KEY_ID. Without one,
    /// requests go unsigned.
    #[arg(long, global = true, env = "NIMBUS_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// Secret of --access-key. Falls back to AWS_SECRET_ACCESS_KEY.
    #[arg(long, global = true, env = "NIMBUS_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (API, gateway, functions) with the embedded store.
    Up(server::UpArgs),
    /// Create or update a function from a directory or a zip.
    Deploy(commands::deploy::Args),
    /// Deploy the app in the current directory, then redeploy what changes on
    /// every save (a broken change keeps the last good version serving).
    Dev(commands::dev::Args),
    /// Apps deployed from manifests: `ls`, `show NAME` (resources, outputs), `rm NAME`.
    #[command(subcommand)]
    App(commands::app::Cmd),
    /// Invoke a function and print its result.
    Invoke(commands::invoke::Args),
    /// List functions.
    Ls,
    /// Show one function's configuration and instances.
    Get(commands::get::Args),
    /// Delete a function.
    Rm(commands::rm::Args),
    /// Print a function's log (START/END/REPORT and its own output).
    Logs(commands::logs::Args),
    /// List invocation records.
    Invocations(commands::invocations::Args),
    /// Show every invocation of one trace (X-Ray Root or W3C trace id), in time
    /// order, with their log lines.
    Trace(commands::trace::Args),
    /// Manage gateway routes (METHOD /path -> function).
    #[command(subcommand)]
    Route(commands::route::Cmd),
    /// The gateway's CORS configuration (origins, methods, headers, credentials, max age).
    #[command(subcommand)]
    Cors(commands::cors::Cmd),
    /// Manage schedules: rate() or cron() expressions that invoke a function.
    /// Alone (or as `nimbus schedules`), list them with their next fire times.
    #[command(visible_alias = "schedules")]
    Schedule(commands::schedule::Args),
    /// Manage gateway authorizers (JWT, Lambda) that routes use.
    #[command(subcommand)]
    Authorizer(commands::authorizer::Cmd),
    /// Manage gateway API keys (x-api-key).
    #[command(subcommand)]
    Apikey(commands::apikey::Cmd),
    /// Manage usage plans: the throttle and quota of API keys.
    #[command(subcommand, name = "usage-plan")]
    UsagePlan(commands::usage_plan::Cmd),
    /// List event-source mappings (queues and streams feeding functions).
    Mappings(commands::mappings::Args),
    /// Summarise the server's Prometheus metrics (GET /metrics).
    Metrics(commands::metrics::Args),
    /// IAM: `simulate` whether a principal may do an action on a resource.
    #[command(subcommand)]
    Iam(commands::iam::Cmd),
    /// Metered usage per function, priced as AWS Lambda would charge it.
    Cost(commands::cost::Args),
    /// The encryption-at-rest keyring: list keys, rotate (re-encrypting stored values).
    #[command(subcommand)]
    Keys(commands::keys::Cmd),
    /// The SES outbox: `ls` the accepted mail, `show ID` one message.
    #[command(subcommand)]
    Mail(commands::mail::Cmd),
    /// SQS queues with their depth; `peek` and `redrive` (dead-letter queues).
    Queues(commands::queues::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => server::run(args),
        other => {
            let credentials = match client::credentials(cli.access_key, cli.secret_key) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(2);
                }
            };
            let client = client::Client::new(&cli.endpoint, credentials);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                match other {
                    Command::Deploy(a) => commands::deploy::run(&client, a).await,
                    Command::Dev(a) => commands::dev::run(&client, a).await,
                    Command::App(c) => commands::app::run(&client, c).await,
                    Command::Invoke(a) => commands::invoke::run(&client, a).await,
                    Command::Ls => commands::ls::run(&client).await,
                    Command::Get(a) => commands::get::run(&client, a).await,
                    Command::Rm(a) => commands::rm::run(&client, a).await,
                    Command::Logs(a) => commands::logs::run(&client, a).await,
                    Command::Invocations(a) => commands::invocations::run(&client, a).await,
                    Command::Trace(a) => commands::trace::run(&client, a).await,
                    Command::Route(c) => commands::route::run(&client, c).await,
                    Command::Cors(c) => commands::cors::run(&client, c).await,
                    Command::Schedule(c) => commands::schedule::run(&client, c).await,
                    Command::Authorizer(c) => commands::authorizer::run(&client, c).await,
                    Command::Apikey(c) => commands::apikey::run(&client, c).await,
                    Command::UsagePlan(c) => commands::usage_plan::run(&client, c).await,
                    Command::Mappings(a) => commands::mappings::run(&client, a).await,
                    Command::Metrics(a) => commands::metrics::run(&client, a).await,
                    Command::Iam(c) => commands::iam::run(&client, c).await,
                    Command::Cost(a) => commands::cost::run(&client, a).await,
                    Command::Keys(c) => commands::keys::run(&client, c).await,
                    Command::Mail(c) => commands::mail::run(&client, c).await,
                    Command::Queues(a) => commands::queues::run(&client, a).await,
                    Command::Up(_) => unreachable!(),
                }
            })
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
