//! `nimbus up`: assemble the server from the role crates and run it.

use anyhow::{Context, Result};
use nimbus_invoker::{Invoker, InvokerSettings};
use nimbus_runtime::{Pool, PoolSettings};
use nimbus_store::{BlobStore, Db};
use nimbus_telemetry::Telemetry;
use sha2::Digest;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where state lives (SQLite database, code bundles, instance scratch dirs).
    #[arg(long, env = "NIMBUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// API listener (AWS-compatible APIs and the Nimbus control API).
    #[arg(long, default_value = "127.0.0.1:4566", env = "NIMBUS_LISTEN")]
    listen: SocketAddr,
    /// Gateway listener for user HTTP routes.
    #[arg(long, default_value = "127.0.0.1:8080", env = "NIMBUS_GATEWAY_LISTEN")]
    gateway_listen: SocketAddr,
    /// Clients of both listeners (API and gateway) must send a request's whole
    /// head within this long, else the connection is closed (slowloris).
    #[arg(long, alias = "gateway-header-timeout", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Clients of both listeners must send a request's whole body within this long
    /// once it is being read, else 408 (API) or the connection is closed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// Open connections per listener at most; past it a listener stops accepting
    /// until one closes (new clients wait in the kernel's backlog).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Stop instances idle this long (e.g. 10m, 30s).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    keep_alive: Duration,
    /// Account-wide cap on concurrent executions (default: sized to the host's memory).
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// When every instance of a function is busy: `eager` always starts a new
    /// instance, as Lambda does; `adaptive` does too up to one busy instance per CPU,
    /// but past that waits for a busy instance to free up when that is expected
    /// sooner than a start, or when the host's CPUs are all busy (it starts one
    /// anyway once no instance has freed up for as long as a start takes).
    #[arg(long, value_enum, default_value = "adaptive", env = "NIMBUS_SCALE_UP")]
    scale_up: ScaleUpArg,
    /// Pre-started interpreter spares kept per Node.js/Python interpreter (Node: per
    /// memory size too) so that cold starts skip the interpreter's own start-up.
    /// Each spare serves one instance and is replaced in the background. 0 disables.
    #[arg(long, default_value_t = 1, env = "NIMBUS_SPARES")]
    spares: usize,
    /// How instances are isolated from the platform and each other: `auto` uses
    /// whatever the host offers (own uid, mount namespace, private /proc, seccomp;
    /// most need root) and reports what is missing; `strict` refuses to start
    /// without all of it; `off` runs instances as the server's user
    /// (docs/SECURITY.md).
    #[arg(long, default_value = "auto", env = "NIMBUS_ISOLATION")]
    isolation: nimbus_runtime::isolation::IsolationMode,
    /// Relay mail SES accepts through this SMTP server (smtp://[user:pass@]host:port,
    /// `?tls=required` for STARTTLS, smtps:// for TLS); every message stays in
    /// the outbox (`nimbus mail ls`) either way, with the relay's outcome.
    #[arg(long, env = "NIMBUS_SMTP_RELAY", value_name = "URL")]
    smtp_relay: Option<String>,
    /// Region used in ARNs and given to functions.
    #[arg(long, default_value = nimbus_core::DEFAULT_REGION)]
    region: String,
    /// Delay before the first retry of a failed async invocation (the second waits
    /// twice as long). Lambda waits about a minute.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    async_retry_base: Duration,
    /// Testing only: run the schedule clock this many times faster than real time
    /// (60 makes `rate(1 minute)` fire every second). Kept monotonic across restarts.
    #[arg(long, hide = true, default_value_t = 1)]
    schedule_clock_speed: u32,
    /// Keep invocation records and log lines this long (e.g. 7d, 12h); older ones
    /// are deleted in the background. 0 keeps them forever. Metered usage (for
    /// `nimbus cost`) is kept regardless.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Do not run these AWS services (comma-separated: sqs, sns, s3, dynamodb,
    /// dynamodbstreams, kinesis, events, secretsmanager, ssm, kms, ses, sesv2, iam).
    /// Their APIs are not served and their state is left untouched; deliveries
    /// into them (destinations, subscriptions, targets) wait in the senders'
    /// outboxes until a server runs them again.
    #[arg(
        long,
        value_delimiter = ',',
        env = "NIMBUS_DISABLE_SERVICES",
        value_name = "NAMES"
    )]
    disable_services: Vec<String>,
    /// Server log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Require AWS SigV4-signed requests on the API listener, accepting this
    /// access key (repeatable): ACCESS_KEY:SECRET acts as the account root,
    /// ACCESS_KEY:SECRET:USER as the IAM user USER. Keys from this flag, from
    /// NIMBUS_CREDENTIALS (comma-separated) and from --credentials-file are all
    /// accepted. Every route then needs a signature except GET /_nimbus/health.
    /// Prefer the file or the variable: a flag's value shows in `ps`.
    /// DEFAULT: NO CREDENTIALS, AND THE API ACCEPTS EVERY REQUEST, SIGNED OR NOT.
    #[arg(long = "credentials", value_name = "KEY:SECRET[:USER]")]
    credentials: Vec<nimbus_edge::AccessKey>,
    /// Where the AWS SDKs functions get are installed (`scripts/install-sdks`):
    /// `python/` (boto3) and `node_modules/` (`@aws-sdk/*` v3), searched after
    /// the function's own code. Default: the `sdk/` dir of the source tree the
    /// binary was built in (an ancestor of the binary), else `<data dir>/sdk`.
    #[arg(long, env = "NIMBUS_SDK_DIR", value_name = "PATH")]
    sdk_dir: Option<PathBuf>,
    /// File of access keys to accept: one ACCESS_KEY:SECRET[:USER] per line;
    /// blank lines and lines starting with # are ignored.
    #[arg(long, env = "NIMBUS_CREDENTIALS_FILE", value_name = "PATH")]
    credentials_file: Option<PathBuf>,
    /// IAM policy evaluation of every signed request that is not the account
    /// root's: `off`; `audit` logs (target nimbus::iam::audit) and counts
    /// (/metrics) every request `enforce` would deny, with the statement that
    /// is missing, and lets it through; `enforce` denies it with the service's
    /// AccessDenied (needs --credentials).
    #[arg(
        long,
        env = "NIMBUS_IAM",
        default_value = "audit",
        value_name = "off|audit|enforce"
    )]
    iam: nimbus_svc_iam::Mode,
    /// Testing only: the shortest STS session DurationSeconds accepted (AWS: 900).
    #[arg(long, hide = true, default_value_t = 900)]
    sts_min_duration: u32,
    /// An OpenID Connect issuer (`https://token.actions.githubusercontent.com`)
    /// whose ID tokens STS AssumeRoleWithWebIdentity accepts: its keys come from
    /// `<issuer>/.well-known/openid-configuration`. Repeat for more.
    #[arg(
        long,
        env = "NIMBUS_OIDC_ISSUER",
        value_name = "URL",
        value_delimiter = ','
    )]
    oidc_issuer: Vec<String>,
    /// An audience (`aud`, IAM's client id) web identity tokens must carry; repeat
    /// for more. Without one any audience is accepted and the role's trust
    /// policy (`<issuer-host>:aud`) decides.
    #[arg(
        long,
        env = "NIMBUS_OIDC_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ','
    )]
    oidc_audience: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScaleUpArg {
    Adaptive,
    Eager,
}

impl From<ScaleUpArg> for nimbus_runtime::ScaleUp {
    fn from(a: ScaleUpArg) -> Self {
        match a {
            ScaleUpArg::Adaptive => nimbus_runtime::ScaleUp::Adaptive,
            ScaleUpArg::Eager => nimbus_runtime::ScaleUp::Eager,
        }
    }
}

/// The access keys of `--credentials`, `NIMBUS_CREDENTIALS` and `--credentials-file`.
fn auth_config(args: &UpArgs) -> Result<nimbus_edge::AuthConfig> {
    let mut keys = args.credentials.clone();
    if let Ok(env) = std::env::var("NIMBUS_CREDENTIALS") {
        for (i, entry) in env.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let key = entry
                .parse()
                .map_err(|e| anyhow::anyhow!("NIMBUS_CREDENTIALS entry {}: {e}", i + 1))?;
            keys.push(key);
        }
    }
    if let Some(path) = &args.credentials_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read credentials file {}", path.display()))?;
        let parsed = nimbus_edge::AuthConfig::parse_file(&text)
            .map_err(|e| anyhow::anyhow!("credentials file {}: {e}", path.display()))?;
        if parsed.is_empty() {
            anyhow::bail!(
                "credentials file {} has no access keys: refusing to start without \
                 authentication when it was asked for",
                path.display()
            );
        }
        keys.extend(parsed);
    }
    nimbus_edge::AuthConfig::new(keys).map_err(anyhow::Error::msg)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The bootstraps Nimbus ships, embedded so the binary is self-contained.
const BOOTSTRAPS: &[(&str, &str)] = &[
    (
        "python/bootstrap.py",
        include_str!("../../../runtimes/python/bootstrap.py"),
    ),
    (
        "node/bootstrap.js",
        include_str!("../../../runtimes/node/bootstrap.js"),
    ),
];

fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("nimbus")
}

/// Write the bootstraps under the data dir (only when they changed).
fn install_runtimes(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("runtimes");
    for (rel, content) in BOOTSTRAPS {
        let path = dir.join(rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(*content) {
            continue;
        }
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(dir)
}

fn default_concurrency() -> u32 {
    // One 128 MB instance per 128 MB of host memory, within Lambda's default of 1000.
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(4096);
    (mem_mb / 128).clamp(16, 1000) as u32
}

/// The server log goes to stderr through a writer thread (`tracing-appender`), so a
/// request never waits on a write(2) of its access or invocation line; lines are
/// buffered and written in batches, flushed whenever the writer catches up. Colour
/// only on a terminal. The guard flushes what is left when `run` returns.
fn init_tracing(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

/// Listen on `addr`, saying plainly when the port is taken and how to pick another.
async fn bind(addr: SocketAddr, flag: &str, env: &str) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "cannot listen on {addr}: the port is taken (another nimbus, or another \
             program); choose another with {flag} HOST:PORT or {env}=HOST:PORT"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

pub fn run(args: UpArgs) -> Result<i32> {
    let _log = init_tracing(args.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nimbus-worker")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: UpArgs) -> Result<i32> {
    let auth = auth_config(&args)?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let server_id = hex::encode(&sha2::Sha256::digest(data_dir.to_string_lossy().as_bytes())[..6]);
    let runtime_dir = install_runtimes(&data_dir).context("cannot install runtime bootstraps")?;
    let gateway_api_id = server_id[..10].to_string();

    let db = Db::open(&data_dir.join("nimbus.db")).context("cannot open the database")?;
    let blobs = BlobStore::open(&data_dir).context("cannot open the code store")?;
    let telemetry = Telemetry::start(db.clone());
    if !args.retention.is_zero() {
        nimbus_telemetry::retention::spawn(db.clone(), args.retention);
    }
    // Bound first: instances are told where it is (AWS_ENDPOINT_URL), and a taken
    // port stops the start before anything runs.
    let api_listener = bind(args.listen, "--listen", "NIMBUS_LISTEN").await?;
    let api_addr = api_listener.local_addr()?;
    let gw_listener = bind(
        args.gateway_listen,
        "--gateway-listen",
        "NIMBUS_GATEWAY_LISTEN",
    )
    .await?;
    let gw_addr = gw_listener.local_addr()?;
    let sdk_dir = args
        .sdk_dir
        .clone()
        .unwrap_or_else(|| default_sdk_dir(&data_dir));
    let sdk = nimbus_runtime::services::SdkDir::probe(&sdk_dir);
    let sdk_summary = sdk_summary(&sdk, &sdk_dir);
    let pool = Pool::new(
        PoolSettings {
            keep_alive: args.keep_alive,
            data_dir: data_dir.clone(),
            runtime_dir,
            region: args.region.clone(),
            server_id,
            scale_up: args.scale_up.into(),
            spares: args.spares,
            isolation: args.isolation,
            services: nimbus_runtime::services::ServiceAccess {
                endpoint_url: Some(format!("http://{}", reachable(api_addr))),
                key_ring: Some(auth.key_ring()),
                sdk,
            },
        },
        telemetry.clone(),
    )?;
    let invoker = Invoker::open(
        db,
        blobs,
        pool.clone(),
        telemetry.clone(),
        InvokerSettings {
            region: args.region.clone(),
            account_concurrency: args.max_concurrency.unwrap_or_else(default_concurrency),
        },
    )
    .await
    .context("cannot load deployed functions")?;

    let events = nimbus_store::EventStore::open(&data_dir.join("events.db"))
        .context("cannot open the event queue")?;
    let queue = nimbus_invoker::AsyncQueue::start(
        events,
        invoker.clone(),
        nimbus_invoker::queue::QueueSettings {
            retry_base: args.async_retry_base,
        },
    )
    .context("cannot start the async queue")?;
    // Every trigger and the gateway run functions through the dispatch seam.
    let dispatch = nimbus_invoker::LocalDispatch::shared(invoker.clone(), queue.clone());
    let scheduler = nimbus_scheduler::Scheduler::start_for_server(
        &data_dir.join("events.db"),
        dispatch.clone(),
        args.region.clone(),
        args.schedule_clock_speed,
    )
    .context("cannot start the scheduler")?;

    let auth_summary = if auth.is_enabled() {
        let n = auth.key_count();
        format!("sigv4 ({n} access key{})", if n == 1 { "" } else { "s" })
    } else {
        "OFF (every request accepted, signed or not; see --credentials)".to_owned()
    };
    if !auth.is_enabled() && !api_addr.ip().is_loopback() {
        tracing::warn!(
            api = %api_addr,
            "the API listens beyond loopback without credentials: anyone who reaches it \
             can deploy and run code; start with --credentials"
        );
    }

    // AWS_IAM function URLs accept the API's access keys.
    let iam_keys: Vec<nimbus_gateway::IamKey> = auth
        .keys()
        .iter()
        .map(|k| nimbus_gateway::IamKey {
            credentials: k.credentials.clone(),
            user: match &k.principal {
                nimbus_core::Principal::User(u) => Some(u.clone()),
                _ => None,
            },
        })
        .collect();
    let routes = nimbus_gateway::RouteTable::open(
        &data_dir.join("nimbus.db"),
        dispatch.clone(),
        telemetry.clone(),
        format!("http://{gw_addr}"),
    )
    .context("cannot load gateway routes")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The AWS services: each opens its own file under the data dir, registers the
    // sink other services deliver into and, if it feeds functions, its mapping
    // source (DESIGN.md, "Backend services and event sources").
    let sinks = std::sync::Arc::new(nimbus_triggers::sinks::Sinks::new(dispatch.clone()));
    let service_ctx = nimbus_svc_common::ServiceContext {
        data_dir: data_dir.clone(),
        region: args.region.clone(),
        account_id: nimbus_core::ACCOUNT_ID.to_string(),
        endpoint: format!("http://{}", reachable(api_addr)),
        dispatch: dispatch.clone(),
        sinks: sinks.clone(),
        mapping_sources: Default::default(),
        options: args
            .smtp_relay
            .iter()
            .map(|u| ("smtp_relay".to_string(), u.clone()))
            .collect(),
    };
    type Start = fn(
        &nimbus_svc_common::ServiceContext,
    ) -> Result<nimbus_svc_common::Service, nimbus_svc_common::StartError>;
    let starts: [(&str, Start); 12] = [
        ("sqs", nimbus_svc_sqs::start),
        ("sns", nimbus_svc_sns::start),
        ("s3", nimbus_svc_s3::start),
        ("dynamodb", nimbus_svc_dynamodb::start),
        ("dynamodbstreams", nimbus_svc_dynamodbstreams::start),
        ("kinesis", nimbus_svc_kinesis::start),
        ("events", nimbus_svc_events::start),
        ("secretsmanager", nimbus_svc_secretsmanager::start),
        ("ssm", nimbus_svc_ssm::start),
        ("kms", nimbus_svc_kms::start),
        ("ses", nimbus_svc_ses::start),
        ("sesv2", nimbus_svc_sesv2::start),
    ];
    if let Some(bad) = args
        .disable_services
        .iter()
        .find(|d| *d != "iam" && !starts.iter().any(|(n, _)| n == d))
    {
        anyhow::bail!(
            "--disable-services: unknown service {bad:?} (one of: {}, iam)",
            starts.map(|(n, _)| n).join(", ")
        );
    }
    let mut services = Vec::new();
    for (name, start) in starts {
        if args.disable_services.iter().any(|d| d == name) {
            tracing::info!(service = name, "service disabled");
            continue;
        }
        services.push(start(&service_ctx)?);
    }
    // IAM: its keys and STS sessions live in the edge's key ring (see crate::iam).
    let iam = crate::iam::start(
        crate::iam::Settings {
            mode: args.iam,
            disabled: args.disable_services.iter().any(|d| d == "iam"),
            sts_min_duration: args.sts_min_duration,
            oidc_issuers: args.oidc_issuer.clone(),
            oidc_audiences: args.oidc_audience.clone(),
        },
        &data_dir,
        &auth,
        &mut services,
    )?;
    // Lambda destinations and dead-letter queues deliver into the services.
    invoker.set_sinks(sinks.clone());
    // The event-source-mapping registry, over the sources the services registered.
    let mappings = nimbus_esm::Registry::open(
        &data_dir,
        service_ctx.mapping_sources.sources(),
        service_ctx.mapping_sources.shard_sources(),
        dispatch.clone(),
        sinks.clone(),
        args.region.clone(),
    )
    .context("cannot start the event-source mappings")?;
    let admins: Vec<_> = services.iter().filter_map(|s| s.admin.clone()).collect();
    let lambda = nimbus_svc_lambda::frontend(
        invoker.clone(),
        queue.clone(),
        routes.clone(),
        mappings,
        sinks.clone(),
    );
    let service_frontends: Vec<std::sync::Arc<dyn nimbus_protocol::Frontend>> =
        services.into_iter().map(|s| s.frontend).collect();
    // The app engine applies templates through the services' own front-ends.
    let apps = nimbus_apps::Engine::open(
        &data_dir,
        nimbus_apps::Services::new(
            &[service_frontends.as_slice(), std::slice::from_ref(&lambda)].concat(),
            &args.region,
            nimbus_core::ACCOUNT_ID,
        ),
    )
    .context("cannot open the app engine")?;
    // Every API on the edge listener; one more is one more line.
    let mut frontends: Vec<std::sync::Arc<dyn nimbus_protocol::Frontend>> = vec![
        nimbus_control::frontend(
            invoker.clone(),
            queue.clone(),
            routes.clone(),
            scheduler.clone(),
            admins,
            nimbus_apps::api::routes(apps),
        ),
        lambda,
        match &iam {
            Some(iam) => nimbus_svc_sts::frontend_with(iam.clone()),
            None => nimbus_svc_sts::frontend(),
        },
    ];
    frontends.extend(service_frontends);
    let instance_peers = instance_peers(auth.is_enabled());
    let authorizer = crate::iam::authorizer(
        iam.as_ref(),
        &frontends,
        auth.is_enabled().then_some(&*sinks),
    );
    let edge = nimbus_edge::Edge::new(
        frontends,
        auth,
        nimbus_edge::EdgeSettings {
            region: args.region.clone(),
            header_read_timeout: args.header_timeout,
            body_read_timeout: args.body_timeout,
            max_connections: args.max_connections,
            instance_peers,
            ..Default::default()
        },
    );
    let edge = match authorizer {
        Some(a) => edge.with_authorizer(a),
        None => edge,
    };
    let gateway = nimbus_gateway::Gateway::new(
        routes,
        nimbus_gateway::GatewaySettings {
            api_id: gateway_api_id,
            header_read_timeout: args.header_timeout,
            body_read_timeout: args.body_timeout,
            max_connections: args.max_connections,
            iam_keys,
            ..Default::default()
        },
    );
    let api_task = tokio::spawn(edge.serve(api_listener, wait_stop(stop_rx.clone())));
    let gw_task = tokio::spawn(gateway.serve(gw_listener, wait_stop(stop_rx.clone())));

    println!(
        "nimbus ready: api http://{api_addr} gateway http://{gw_addr} data {} functions {} limits {} auth {auth_summary} sdks {sdk_summary}",
        data_dir.display(),
        invoker.list().len(),
        pool.limits_mechanism()
    );
    tracing::info!(api = %api_addr, gateway = %gw_addr, data_dir = %data_dir.display(), "nimbus ready");

    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    // In-flight invocations finish or time out (the longest Lambda timeout bounds it).
    let drain = async {
        let _ = api_task.await;
        let _ = gw_task.await;
    };
    if tokio::time::timeout(
        Duration::from_secs(nimbus_core::limits::TIMEOUT_MAX_S as u64 + 5),
        drain,
    )
    .await
    .is_err()
    {
        tracing::warn!("in-flight requests did not drain in time");
    }
    pool.shutdown().await;
    telemetry.flush().await;
    tracing::info!("stopped");
    Ok(0)
}

/// How the edge recognises a function instance's connection (issue 19: its
/// requests must then carry its own function's signature, auth on or off);
/// `None`, said loudly, when instances do not run as uids of their own.
fn instance_peers(auth_enabled: bool) -> Option<nimbus_edge::InstancePeers> {
    let active =
        nimbus_runtime::isolation::report().is_some_and(|r| r.platform_ports_check == "active");
    if !active {
        if auth_enabled {
            tracing::info!(
                "instances do not run as their own uids: the edge cannot tell their requests \
                 apart (authentication is on, so every request needs a valid key anyway)"
            );
        } else {
            tracing::warn!(
                "instances do not run as their own uids and authentication is off: functions \
                 can call the control API and every service unsigned (the platform-ports \
                 check is inactive; see docs/SECURITY.md)"
            );
        }
        return None;
    }
    tracing::info!("the edge requires function instances to sign with their own keys");
    Some(nimbus_edge::InstancePeers::new(|local, peer| {
        use nimbus_runtime::isolation::{instance_peer, Peer};
        match instance_peer(local, peer) {
            Peer::Other => nimbus_edge::PeerIdentity::Other,
            Peer::Instance(uid, function) => {
                nimbus_edge::PeerIdentity::Instance(nimbus_edge::InstancePeer { uid, function })
            }
            Peer::Unknown => nimbus_edge::PeerIdentity::Unknown,
            // The server calling itself (a service delivering to a URL a function
            // chose): held to the same rule as an instance bound to no function,
            // so only a configured key passes, never an unsigned request.
            Peer::Server => nimbus_edge::PeerIdentity::Instance(nimbus_edge::InstancePeer {
                // SAFETY: geteuid has no preconditions.
                uid: unsafe { libc::geteuid() },
                function: None,
            }),
        }
    }))
}

/// An address of the API listener that instances on this host reach: the
/// loopback address for a wildcard bind.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The `sdk/` dir of the source tree the binary was built in (`<repo>/target/
/// {debug,release}/nimbus`: the first ancestor holding `sdk/package.json`), else
/// `<data dir>/sdk`.
fn default_sdk_dir(data_dir: &Path) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .map(|d| d.join("sdk"))
                .find(|d| d.join("package.json").is_file())
        })
        .unwrap_or_else(|| data_dir.join("sdk"))
}

/// What the ready line says about the SDKs functions get.
fn sdk_summary(sdk: &nimbus_runtime::services::SdkDir, dir: &Path) -> String {
    let python = sdk
        .python
        .as_ref()
        .map(|_| format!("boto3 {}", sdk.boto3_version().unwrap_or_default()));
    let node = sdk
        .node
        .as_ref()
        .map(|_| format!("@aws-sdk v{}", sdk.js_sdk_version().unwrap_or_default()));
    match (python, node) {
        (None, None) => {
            tracing::warn!(
                sdk_dir = %dir.display(),
                "no AWS SDKs for functions found: run scripts/install-sdks (or pass --sdk-dir); \
                 functions can still bundle their own"
            );
            format!("none (not installed in {})", dir.display())
        }
        (p, n) => {
            let found: Vec<String> = p.into_iter().chain(n).collect();
            tracing::info!(sdk_dir = %dir.display(), sdks = %found.join(", "), "AWS SDKs for functions");
            format!("{} ({})", found.join(", "), dir.display())
        }
    }
}

async fn wait_stop(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
