//! The `xingress` binary: parse arguments, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use xingress::cli::{Cli, Command, EXIT_CONFIG};

/// mimalloc: reloads at scale free and rebuild tens of thousands of small
/// objects, where glibc's malloc spent nearly half the time consolidating
/// and unlinking chunks (`cargo xtask bench scale`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing() {
        eprintln!("xingress: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Command::Run(args) => {
            let config = match args.into_config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("xingress: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => xingress::check::main(&args),
        Command::Migrate(args) => xingress::migrate::main(&args),
        Command::Xdp(cmd) => {
            use xingress::{cli::XdpCommand, dataplane::cli::XdpRead};
            let (read, args) = match &cmd {
                XdpCommand::Stats(a) => (XdpRead::Stats, a),
                XdpCommand::Flows(a) => (XdpRead::Flows, a),
            };
            xingress::dataplane::cli::main(read, &args.pin_path, args.output)
        }
    }
}

/// Lets the agent open as many files as its hard limit allows, as nginx's
/// `worker_rlimit_nofile` does: every client and pod connection and every
/// UDP session holds one, and the usual soft limit (1,024) is soon spent.
fn raise_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid struct; failure keeps
    // the limit as it was.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                tracing::debug!(before, now = lim.rlim_max, "raised the open-file limit");
            }
        }
    }
}

fn run(config: xingress::cli::Config) -> anyhow::Result<()> {
    raise_file_limit();
    let runtime = match config.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    runtime.block_on(xingress::app::run(config))?;
    Ok(())
}

/// The agent's log on stderr, filtered by `XINGRESS_LOG` (else `RUST_LOG`,
/// else `info`). A filter that does not parse is an error naming it, not a
/// silent `info`.
fn init_tracing() -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let mut chosen = None;
    for var in ["XINGRESS_LOG", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            chosen = Some((var, v));
            break;
        }
    }
    let filter = match chosen {
        None => EnvFilter::new("info"),
        Some((var, v)) => {
            EnvFilter::try_new(&v).map_err(|e| format!("invalid {var} {v:?}: {e}"))?
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
